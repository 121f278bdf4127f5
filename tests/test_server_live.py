"""The server over real sockets on 127.0.0.1 (point 8, and 7's streaming/100-continue/413):
keep-alive, pipelining, HTTP/1.0, chunked bodies, limits, access log, patching warning."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import gevent.socket
import pytest
from helpers import RawClient, wait_until

from h3green import H3, H3Event, HTTPError, Response, Server

pytestmark = pytest.mark.live

DEADLINE = 5.0


def request(method: str, path: str, *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test", *headers]
    if body and not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def make_app(reads: list[str]) -> H3:
    app = H3()

    @app.get("/")
    def index(event: H3Event) -> dict[str, Any]:
        return {"path": event.path, "n": event.get_query("n"), "version": event.http_version}

    @app.post("/echo")
    def echo(event: H3Event) -> bytes:
        reads.append("echo")
        return event.read_body()

    @app.post("/reject")
    def reject(event: H3Event) -> None:
        reads.append("reject")
        raise HTTPError(403, "not you")

    @app.post("/json")
    def json_body(event: H3Event) -> Any:
        return event.read_json()

    @app.get("/crash")
    def crash(event: H3Event) -> None:
        raise RuntimeError("boom")

    @app.get("/stream")
    def stream(event: H3Event) -> Iterator[bytes]:
        yield b"first,"
        yield b"second"

    @app.get("/broken-stream")
    def broken(event: H3Event) -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("mid-stream")

    return app


@pytest.fixture
def reads() -> list[str]:
    return []


@pytest.fixture
def serve(reads: list[str]) -> Iterator[Callable[..., tuple[Server, Callable[[], RawClient]]]]:
    servers: list[Server] = []
    clients: list[RawClient] = []

    def start(app: H3 | None = None, **options: Any) -> tuple[Server, Callable[[], RawClient]]:
        server = Server(app or make_app(reads), port=0, **{"access_log": False, **options})
        server.start()
        servers.append(server)

        def connect() -> RawClient:
            raw = RawClient(server.address, timeout=DEADLINE)
            clients.append(raw)
            return raw

        return server, connect

    yield start
    for raw in clients:
        raw.close()
    for server in servers:
        server.stop(timeout=2)
        assert not server.connections


def test_address_and_a_plain_request(serve: Any) -> None:
    server, connect = serve()
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    raw = connect()
    raw.send(request("GET", "/?n=1"))
    reply = raw.expect()
    assert (reply.version, reply.status) == ("HTTP/1.1", 200)
    assert reply.json() == {"path": "/", "n": "1", "version": "1.1"}
    assert reply.header("content-length") == str(len(reply.body))
    assert reply.header("date")


def test_keep_alive_serves_several_requests(serve: Any) -> None:
    _, connect = serve()
    raw = connect()
    for n in range(3):
        raw.send(request("GET", f"/?n={n}"))
        assert raw.expect().json()["n"] == str(n)


@pytest.mark.parametrize(
    ("req", "status"),
    [
        (request("GET", "/crash"), 500),
        (request("GET", "/missing"), 404),
        (request("DELETE", "/"), 405),
        (request("POST", "/json", body=b"{not json"), 400),
    ],
)
def test_connection_stays_usable_after_an_error_response(
    serve: Any, caplog: pytest.LogCaptureFixture, req: bytes, status: int
) -> None:
    _, connect = serve()
    raw = connect()
    with caplog.at_level(logging.CRITICAL, logger="h3green"):
        raw.send(req)
        reply = raw.expect()
    assert reply.status == status
    assert reply.json()["status"] == status
    assert b"boom" not in reply.body and b"Traceback" not in reply.body
    assert reply.header("connection") is None
    raw.send(request("GET", "/?n=after"))
    assert raw.expect().json()["n"] == "after"


def test_malformed_path_is_a_json_400_over_the_wire(serve: Any) -> None:
    _, connect = serve()
    raw = connect()
    raw.send(request("GET", "/%zz"))
    reply = raw.expect()
    assert reply.status == 400
    assert reply.json() == {
        "status": 400,
        "statusText": "Bad Request",
        "message": "malformed percent-escape in path",
    }


def test_keep_alive_after_a_rejected_body_that_was_sent(serve: Any, reads: list[str]) -> None:
    _, connect = serve()
    raw = connect()
    raw.send(request("POST", "/reject", body=b"x" * 100))  # small body: drained, not a reason to close
    assert raw.expect().status == 403
    raw.send(request("GET", "/?n=2"))
    assert raw.expect().json()["n"] == "2"


def test_pipelined_requests_answer_in_order(serve: Any) -> None:
    _, connect = serve()
    raw = connect()
    raw.send(
        request("GET", "/?n=1")
        + request("POST", "/echo", body=b"pipelined body")
        + request("GET", "/missing")
        + request("GET", "/?n=4")
    )
    assert raw.expect().json()["n"] == "1"
    assert raw.expect().body == b"pipelined body"
    assert raw.expect().status == 404
    assert raw.expect().json()["n"] == "4"


def test_http_10_request_is_answered_and_closed(serve: Any) -> None:
    _, connect = serve()
    raw = connect()
    raw.send(request("GET", "/", version="1.0"))
    reply = raw.expect()
    assert reply.status == 200
    assert reply.json()["version"] == "1.0"
    assert reply.header("connection") == "close"
    assert raw.closed_by_server()


def test_http_10_stream_is_close_delimited(serve: Any) -> None:
    _, connect = serve()
    raw = connect()
    raw.send(request("GET", "/stream", version="1.0"))
    reply = raw.expect()
    assert reply.header("transfer-encoding") is None and reply.header("content-length") is None
    assert reply.body == b"first,second"  # read to EOF: the close ends the body


def test_streamed_response_is_chunked_on_the_wire(serve: Any) -> None:
    _, connect = serve()
    raw = connect()
    raw.send(request("GET", "/stream"))
    reply = raw.expect()
    assert reply.header("transfer-encoding") == "chunked"
    assert reply.chunks == [b"first,", b"second"]
    raw.send(request("GET", "/?n=next"))  # the zero chunk ended it: the connection lives on
    assert raw.expect().json()["n"] == "next"


def test_stream_failing_midway_truncates_and_closes(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    _, connect = serve()
    raw = connect()
    with caplog.at_level(logging.CRITICAL, logger="h3green"):
        raw.send(request("GET", "/broken-stream"))
        wire = raw.read_to_eof()  # the server closes the connection
    head, _, body = wire.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"7\r\npartial\r\n"  # no terminating chunk: the client knows it was cut


def test_head_keeps_content_length_without_body(serve: Any) -> None:
    _, connect = serve()
    raw = connect()
    raw.send(request("HEAD", "/?n=1"))
    reply = raw.expect(head_only=True)
    assert reply.status == 200 and int(reply.header("content-length") or 0) > 0
    raw.send(request("GET", "/?n=2"))  # no stray body bytes before the next response
    assert raw.expect().json()["n"] == "2"


def test_chunked_request_body(serve: Any) -> None:
    _, connect = serve()
    raw = connect()
    raw.send(
        request("POST", "/echo", "Transfer-Encoding: chunked")
        + b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"
    )
    assert raw.expect().body == b"hello world"


def test_body_is_not_read_before_the_handler(serve: Any, reads: list[str]) -> None:
    _, connect = serve()
    raw = connect()
    raw.send(request("POST", "/reject", "Content-Length: 1000000"))  # head only, no body ever
    reply = raw.expect()
    assert reply.status == 403
    assert reads == ["reject"]
    # The body never came, and is too large to drain: the server says so and closes.
    assert reply.header("connection") == "close"
    assert raw.closed_by_server()


def test_100_continue_is_sent_only_when_the_handler_reads(serve: Any, reads: list[str]) -> None:
    _, connect = serve()
    raw = connect()
    raw.send(request("POST", "/echo", "Content-Length: 11", "Expect: 100-continue"))
    interim = raw.expect(interim=True)
    assert interim.status == 100
    assert reads == ["echo"]  # the handler asked for the body before the 100 went out
    raw.send(b"hello world")
    assert raw.expect().body == b"hello world"
    raw.send(request("GET", "/?n=next"))
    assert raw.expect().json()["n"] == "next"


def test_100_continue_not_sent_when_the_handler_rejects(serve: Any, reads: list[str]) -> None:
    _, connect = serve()
    raw = connect()
    raw.send(request("POST", "/reject", "Content-Length: 11", "Expect: 100-continue"))
    reply = raw.expect()
    assert reply.status == 403  # the final answer comes first: no 100 before it
    assert reads == ["reject"]
    assert reply.header("connection") == "close"
    assert raw.closed_by_server()


def test_413_from_content_length_up_front(serve: Any, reads: list[str]) -> None:
    _, connect = serve(max_body_size=100)
    raw = connect()
    raw.send(request("POST", "/echo", "Content-Length: 101", "Expect: 100-continue"))
    reply = raw.expect()
    assert reply.status == 413  # no 100 Continue: the upload is refused before it starts
    assert reply.json()["message"] == "request body exceeds 100 bytes"
    assert raw.closed_by_server()


def test_413_from_a_chunked_body(serve: Any) -> None:
    _, connect = serve(max_body_size=100)
    raw = connect()
    chunk = b"40\r\n" + b"y" * 64 + b"\r\n"
    raw.send(request("POST", "/echo", "Transfer-Encoding: chunked") + chunk * 2 + b"0\r\n\r\n")
    reply = raw.expect()
    assert reply.status == 413
    assert reply.json()["message"] == "request body exceeds 100 bytes"


def test_body_at_the_limit_is_accepted(serve: Any) -> None:
    _, connect = serve(max_body_size=100)
    raw = connect()
    raw.send(request("POST", "/echo", body=b"z" * 100))
    assert raw.expect().body == b"z" * 100


def test_access_log(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    _, connect = serve(access_log=True)
    raw = connect()
    with caplog.at_level(logging.INFO, logger="h3green.access"):
        raw.send(request("GET", "/?n=1") + request("GET", "/missing"))
        raw.expect()
        raw.expect()
        deadline = time.monotonic() + DEADLINE
        while len([r for r in caplog.records if r.name == "h3green.access"]) < 2:
            assert time.monotonic() < deadline
            gevent.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "h3green.access"]
    assert lines[0].startswith('127.0.0.1 - "GET /?n=1 HTTP/1.1" 200 ')
    assert lines[1].startswith('127.0.0.1 - "GET /missing HTTP/1.1" 404 ')


def test_access_log_off(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    _, connect = serve(access_log=False)
    raw = connect()
    with caplog.at_level(logging.INFO, logger="h3green.access"):
        raw.send(request("GET", "/"))
        raw.expect()
    assert not [r for r in caplog.records if r.name == "h3green.access"]


def test_warns_when_gevent_is_not_patched(caplog: pytest.LogCaptureFixture) -> None:
    # pytest runs without gevent's monkey patching, so the warning must fire here.
    server = Server(H3(), port=0, access_log=False)
    with caplog.at_level(logging.WARNING, logger="h3green"):
        server.start()
    try:
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "h3green"]
        assert len(warnings) == 1
        assert "blocking calls will stall every client" in warnings[0].getMessage()
    finally:
        server.stop(timeout=1)


def test_no_warning_when_gevent_is_patched(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gevent.monkey

    monkeypatch.setattr(gevent.monkey, "is_module_patched", lambda name: True)
    server = Server(H3(), port=0, access_log=False)
    with caplog.at_level(logging.WARNING, logger="h3green"):
        server.start()
    try:
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        server.stop(timeout=1)


def test_server_refuses_a_non_h3_app() -> None:
    with pytest.raises(TypeError, match="Server serves an H3 app"):
        Server(lambda environ, start: [], port=0)  # type: ignore[arg-type]


def test_concurrent_clients_do_not_block_each_other(serve: Any) -> None:
    release = gevent.event.Event()
    app = H3()
    app.get("/slow", lambda e: release.wait(DEADLINE) and "slow")
    app.get("/fast", lambda e: "fast")
    _, connect = serve(app)
    slow, fast = connect(), connect()
    slow.send(request("GET", "/slow"))
    fast.send(request("GET", "/fast"))
    assert fast.expect().body == b"fast"  # answered while /slow is still waiting
    release.set()
    assert slow.expect().body == b"slow"


def test_stop_closes_idle_keep_alive_connections(serve: Any) -> None:
    server, connect = serve()
    raw = connect()
    raw.send(request("GET", "/"))
    raw.expect()
    server.stop(timeout=2)
    assert raw.closed_by_server()
    assert not server.connections


def test_accepted_sockets_have_tcp_nodelay(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from h3green import server as server_module

    flags: list[int] = []
    original = server_module.Connection

    class Recording(original):  # type: ignore[misc, valid-type]
        __slots__ = ()

        def __init__(self, sock: Any, *args: Any) -> None:
            flags.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            super().__init__(sock, *args)

    monkeypatch.setattr(server_module, "Connection", Recording)
    _, connect = serve()
    raw = connect()
    raw.send(request("GET", "/"))
    assert raw.expect().status == 200
    assert len(flags) == 1 and flags[0] != 0


def test_small_response_is_one_write(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from h3green import server as server_module

    writes: list[bytes] = []
    original_send = server_module.Connection.send

    def counting_send(self: Any, data: bytes, timeout: float | None) -> None:
        writes.append(data)
        original_send(self, data, timeout)

    monkeypatch.setattr(server_module.Connection, "send", counting_send)
    _, connect = serve()
    raw = connect()
    raw.send(request("GET", "/?n=1"))
    reply = raw.expect()
    assert len(writes) == 1  # head and body in one sendall: no Nagle/delayed-ACK stall
    assert writes[0].endswith(reply.body) and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


def test_handler_400_on_a_bodyless_request_keeps_the_connection(serve: Any) -> None:
    app = H3()

    @app.get("/check")
    def check(event: H3Event) -> str:
        if event.get_query("id") != "ok":
            raise HTTPError(400, "id must be ok")
        return "fine"

    _, connect = serve(app)
    raw = connect()
    raw.send(request("GET", "/check?id=bad"))
    reply = raw.expect()
    assert (reply.status, reply.header("connection")) == (400, None)
    raw.send(request("GET", "/check?id=ok"))
    assert raw.expect().body == b"fine"


def test_stream_reading_an_absent_body_late(serve: Any) -> None:
    app = H3()

    @app.get("/late")
    def late(event: H3Event) -> Iterator[bytes]:
        yield b"before,"
        yield b"body=" + event.read_body()  # read while streaming, after the head went out

    _, connect = serve(app)
    raw = connect()
    raw.send(request("GET", "/late") + request("GET", "/late"))
    assert raw.expect().body == b"before,body="
    assert raw.expect().body == b"before,body="


def test_serve_blocks_until_sigterm_then_stops_gracefully(reads: list[str]) -> None:
    import os
    import signal

    from h3green import serve

    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    runner = gevent.spawn(serve, make_app(reads), listener=listener, access_log=False)
    try:
        raw = RawClient(listener.getsockname(), timeout=DEADLINE)
        raw.send(request("GET", "/?n=1"))
        # Answered: serve() has started and installed its signal handlers.
        assert raw.expect().json()["n"] == "1"
        assert not runner.dead
        os.kill(os.getpid(), signal.SIGTERM)
        runner.join(timeout=DEADLINE)
        assert runner.dead and runner.successful()
        assert raw.closed_by_server()  # the idle keep-alive connection was closed
        raw.close()
    finally:
        runner.kill()
        listener.close()


def test_client_leaving_mid_stream_closes_the_generator(serve: Any) -> None:
    closed = gevent.event.Event()
    produced: list[int] = []

    def endless(event: H3Event) -> Iterator[bytes]:
        try:
            for i in range(10_000):  # bounded: ~640 MB, far more than any socket buffer
                produced.append(i)
                yield b"x" * 65536
        finally:
            closed.set()

    app = H3()
    app.get("/endless", endless)
    server, connect = serve(app)
    raw = connect()
    raw.send(request("GET", "/endless"))
    raw.expect(head_only=True)
    raw.close()  # leave with the server blocked writing
    assert closed.wait(DEADLINE), "the generator was not closed after the client left"
    assert len(produced) < 10_000
    wait_until(lambda: not server.connections, DEADLINE, "the connection to be released")


def test_failing_close_of_a_body_is_logged(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return iter([b"a", b"b"])

        def close(self) -> None:
            raise OSError("close failed")

    app = H3()
    app.get("/", lambda e: Response(Body()))
    _, connect = serve(app)
    raw = connect()
    with caplog.at_level(logging.ERROR, logger="h3green"):
        raw.send(request("GET", "/"))
        assert raw.expect().body == b"ab"
        raw.send(request("GET", "/"))  # the connection is unaffected
        assert raw.expect().body == b"ab"
    failures = [r for r in caplog.records if r.getMessage() == "closing a response body failed"]
    assert len(failures) == 2
