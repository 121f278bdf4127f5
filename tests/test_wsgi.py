"""An ``H3`` app as a WSGI application: environ to event, response to WSGI, SSE through it."""

from __future__ import annotations

import http.client
import io
import os
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import gevent
import pytest
from helpers.wsgi import call, make_environ, start

from h3green import H3, BackpressureDetected, H3Event, Response, SSEWriter
from h3green.response import redirect
from h3green.wsgi import WSGIAdapter, WSGIConfig, event_from_environ


def make_app() -> H3:
    app = H3()

    @app.get("/hello/:name")
    def hello(event: H3Event) -> dict[str, Any]:
        return {"name": event.params["name"], "path": event.path, "target": event.target}

    @app.post("/echo")
    def echo(event: H3Event) -> bytes:
        return event.read_body()

    @app.get("/info")
    def info(event: H3Event) -> dict[str, Any]:
        return {
            "headers": event.headers.to_dict(),
            "query": event.query_string,
            "remote": event.remote_addr,
            "scheme": event.scheme,
            "url": event.url,
            "version": event.http_version,
        }

    @app.get("/nothing")
    def nothing(event: H3Event) -> Response:
        return Response(None, 204)

    @app.get("/cached")
    def cached(event: H3Event) -> Response:
        return Response(None, 304, {"etag": '"x"'})

    @app.get("/hop")
    def hop(event: H3Event) -> Response:
        return Response("hi", headers={"connection": "close", "keep-alive": "5", "x-kept": "1"})

    @app.get("/cookies")
    def cookies(event: H3Event) -> str:
        event.append_header("set-cookie", "a=1")
        event.append_header("set-cookie", "b=2")
        return "ok"

    @app.get("/go")
    def go(event: H3Event) -> Response:
        return redirect("/hello/x")

    return app


class Tracked:
    """A streamed body that records how it was consumed."""

    def __init__(self, pieces: list[bytes], fail_at: int | None = None) -> None:
        self.pieces = pieces
        self.fail_at = fail_at
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        for index, piece in enumerate(self.pieces):
            if index == self.fail_at:
                raise RuntimeError("body failed")
            yield piece

    def close(self) -> None:
        self.closed += 1


class LimitedInput:
    """``wsgi.input`` that fails the test if read past what the server would allow."""

    def __init__(self, data: bytes, allowed: int) -> None:
        self._stream = io.BytesIO(data)
        self.allowed = allowed
        self.consumed = 0

    def read(self, size: int) -> bytes:
        assert size >= 0, "unbounded read"
        assert self.consumed + size <= self.allowed, "read past CONTENT_LENGTH"
        data = self._stream.read(size)
        self.consumed += len(data)
        return data


# -- requests ----------------------------------------------------------------------------


def test_route_params_from_utf8_path_info() -> None:
    # PEP 3333: PATH_INFO carries the raw bytes decoded as latin-1.
    raw = "/hello/w\u00e9 x".encode().decode("latin-1")
    result = call(make_app(), make_environ(path=raw))
    assert result.status == "200 OK"
    assert result.header("content-type") == "application/json"
    assert result.header("content-length") == str(len(result.body))
    assert (
        result.body.decode() == '{"name":"w\u00e9 x","path":"/hello/w\u00e9 x","target":"/hello/w%C3%A9%20x"}'
    )


def test_percent_in_path_info_is_literal() -> None:
    result = call(make_app(), make_environ(path="/hello/100%25"))
    assert result.status_code == 200
    assert b'"name":"100%25"' in result.body


def test_invalid_utf8_path_is_a_400() -> None:
    result = call(make_app(), make_environ(path="/hello/\xff"))
    assert result.status == "400 Bad Request"
    assert b"UTF-8" in result.body or b"utf-8" in result.body.lower()


def test_script_name_prefix_stays_out_of_routing() -> None:
    result = call(make_app(), make_environ(path="/hello/x", SCRIPT_NAME="/app", QUERY_STRING="a=1"))
    assert result.status_code == 200
    assert b'"target":"/app/hello/x?a=1"' in result.body


def test_raw_uri_is_the_target() -> None:
    result = call(make_app(), make_environ(path="/hello/a b", RAW_URI="/hello/a%20b"))
    assert b'"target":"/hello/a%20b"' in result.body


def test_headers_query_remote_scheme_and_version() -> None:
    environ = make_environ(
        path="/info",
        query="q=1&r=2",
        headers={"X-Custom": "yes", "Content-Type": "text/plain", "Host": "example.org:8080"},
        REMOTE_ADDR="10.1.2.3",
        SERVER_PROTOCOL="HTTP/1.0",
    )
    environ["wsgi.url_scheme"] = "https"
    environ["HTTP_CONTENT_TYPE"] = "ignored/duplicate"
    info = call(make_app(), environ, validate=False).body
    import json

    data = json.loads(info)
    assert data["headers"]["x-custom"] == "yes"
    assert data["headers"]["content-type"] == "text/plain"
    assert data["query"] == "q=1&r=2"
    assert data["remote"] == "10.1.2.3"
    assert data["scheme"] == "https"
    assert data["version"] == "1.0"
    assert data["url"] == "https://example.org:8080/info?q=1&r=2"


def test_host_falls_back_to_server_name_and_port() -> None:
    environ = make_environ(path="/info", SERVER_NAME="srv", SERVER_PORT="81")
    environ.pop("HTTP_HOST", None)
    event = event_from_environ(environ)
    assert event.headers["host"] == "srv:81"
    environ["SERVER_PORT"] = ""
    assert event_from_environ(environ).headers["host"] == "srv"
    environ["SERVER_PORT"] = "80"
    assert event_from_environ(environ).headers["host"] == "srv"
    environ.update({"SERVER_PORT": "443", "wsgi.url_scheme": "https"})
    assert event_from_environ(environ).url == "https://srv/info"


def test_body_is_read_up_to_content_length_only() -> None:
    stream = LimitedInput(b"hello world and more", allowed=11)
    environ = make_environ("POST", "/echo", body=b"x" * 11)
    environ["wsgi.input"] = stream
    result = call(make_app(), environ, validate=False)
    assert result.body == b"hello world"
    assert stream.consumed == 11


def test_body_without_content_length_is_empty() -> None:
    environ = make_environ("POST", "/echo")
    environ["wsgi.input"] = LimitedInput(b"unexpected", allowed=0)
    assert call(make_app(), environ, validate=False).body == b""


def test_input_terminated_body_reads_to_the_end() -> None:
    environ = make_environ("POST", "/echo")
    environ["wsgi.input"] = io.BytesIO(b"z" * 70000)
    environ["wsgi.input_terminated"] = True
    assert call(make_app(), environ).body == b"z" * 70000


def test_declared_body_over_the_limit_is_413_unread() -> None:
    adapter = WSGIAdapter(make_app(), max_body_size=10)
    environ = make_environ("POST", "/echo", body=b"x" * 11)
    environ["wsgi.input"] = LimitedInput(b"x" * 11, allowed=0)
    result = call(adapter, environ, validate=False)
    assert result.status == f"413 {HTTPStatus(413).phrase}"  # its name depends on the Python


def test_streamed_body_over_the_limit_is_413() -> None:
    adapter = WSGIAdapter(make_app(), max_body_size=10)
    environ = make_environ("POST", "/echo")
    environ["wsgi.input_terminated"] = True
    environ["wsgi.input"] = io.BytesIO(b"y" * 100)
    assert call(adapter, environ).status_code == 413


@pytest.mark.parametrize("length", ["abc", "-1", "1.5"])
def test_invalid_content_length_is_400(length: str) -> None:
    environ = make_environ("POST", "/echo", CONTENT_LENGTH=length)
    result = call(make_app(), environ, validate=False)
    assert result.status == "400 Bad Request"
    assert b"Content-Length" in result.body


def test_truncated_body_is_400() -> None:
    environ = make_environ("POST", "/echo", body=b"12345")
    environ["wsgi.input"] = io.BytesIO(b"12")
    result = call(make_app(), environ)
    assert result.status_code == 400
    assert b"before the body was complete" in result.body


def test_input_error_is_400() -> None:
    class Broken:
        def read(self, size: int) -> bytes:
            raise ConnectionResetError("reset")

    environ = make_environ("POST", "/echo", body=b"12345")
    environ["wsgi.input"] = Broken()
    result = call(make_app(), environ, validate=False)
    assert result.status_code == 400


# -- responses ---------------------------------------------------------------------------


def test_head_has_length_but_no_body() -> None:
    result = call(make_app(), make_environ("HEAD", "/hello/x"))
    assert result.status_code == 200
    assert result.body == b""
    assert int(result.header("content-length") or 0) > 0


@pytest.mark.parametrize(
    ("path", "status"), [("/nothing", "204 No Content"), ("/cached", "304 Not Modified")]
)
def test_no_body_statuses(path: str, status: str) -> None:
    result = call(make_app(), make_environ(path=path))
    assert result.status == status
    assert result.body == b""
    assert result.header("content-length") is None


def test_hop_by_hop_headers_are_dropped() -> None:
    result = call(make_app(), make_environ(path="/hop"))
    names = [name for name, _ in result.headers]
    assert "connection" not in names and "keep-alive" not in names
    assert result.header("x-kept") == "1"


def test_repeated_headers_and_unknown_status_reason() -> None:
    app = H3()
    app.get("/odd", lambda e: Response("odd", 299))
    result = call(app, make_environ(path="/odd"))
    assert result.status == "299 Unknown"
    cookies = call(make_app(), make_environ(path="/cookies"))
    assert [v for k, v in cookies.headers if k == "set-cookie"] == ["a=1", "b=2"]


def test_redirect_passes_through() -> None:
    result = call(make_app(), make_environ(path="/go"), validate=False)
    assert result.status == "302 Found"
    assert result.header("location") == "/hello/x"


def test_streamed_iterable_yields_pieces_and_is_closed() -> None:
    body = Tracked([b"a", b"", b"b", b"c"])
    app = H3()
    app.get("/s", lambda e: Response(body))
    result = call(app, make_environ(path="/s"))
    assert result.chunks == [b"a", b"", b"b", b"c"]
    assert result.header("content-length") is None
    assert body.closed == 1


def test_streamed_body_close_is_called() -> None:
    body = Tracked([b"a", b"b"])
    app = H3()

    @app.get("/s")
    def stream(event: H3Event) -> Response:
        response = Response(None, 200, {"content-type": "text/plain"})
        response.body = body
        return response

    result = call(app, make_environ(path="/s"))
    assert result.body == b"ab"
    assert body.closed == 1
    head = call(app, make_environ("HEAD", "/s"))
    assert head.body == b"" and body.closed == 2
    empty = Tracked([])
    app.get("/e", lambda e: _with_body(empty))
    assert call(app, make_environ(path="/e")).body == b""
    assert empty.closed == 1


def _with_body(body: Any) -> Response:
    response = Response(None, 200, {"content-type": "text/plain"})
    response.body = body
    return response


def test_streamed_body_failing_at_once_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    body = Tracked([b"a"], fail_at=0)
    app = H3()
    app.get("/s", lambda e: _with_body(body))
    result = call(app, make_environ(path="/s"))
    assert result.status == "500 Internal Server Error"
    assert b'"unhandled":true' in result.body
    assert body.closed == 1
    assert "streamed response body" in caplog.text


def test_streamed_body_failing_later_raises_to_the_server() -> None:
    body = Tracked([b"a", b"b"], fail_at=1)
    app = H3()
    app.get("/s", lambda e: _with_body(body))
    _head, result = start(app, make_environ(path="/s"))
    iterator = iter(result)
    assert next(iterator) == b"a"
    with pytest.raises(RuntimeError, match="body failed"):
        next(iterator)
    result.close()  # type: ignore[attr-defined]
    assert body.closed == 1


def test_adapter_options_and_errors() -> None:
    with pytest.raises(TypeError, match="WSGIAdapter serves an H3 app"):
        WSGIAdapter(lambda e, s: [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sse_queue_size"):
        WSGIConfig(sse_queue_size=0)
    with pytest.raises(ValueError, match=">= 0"):
        WSGIConfig(sse_heartbeat=-1)
    assert repr(WSGIAdapter(H3())).startswith("<WSGIAdapter <H3")


# -- Server-Sent Events --------------------------------------------------------------------


def sse_app(callback: Any, heartbeat: float | None = None) -> H3:
    app = H3()

    @app.get("/events")
    def events(event: H3Event) -> None:
        event.start_sse(heartbeat=heartbeat)
        event.set_stream_callback(callback)

    return app


def test_sse_events_flow_and_on_close_runs() -> None:
    closed: list[str] = []

    def stream(writer: SSEWriter) -> None:
        writer.on_close(lambda: closed.append("closed"))
        with writer:
            for n in range(3):
                writer.send_event(str(n), event="tick", id=str(n))
                gevent.sleep(0.001)

    result = call(sse_app(stream), make_environ(path="/events"))
    assert result.status == "200 OK"
    assert result.header("content-type") == "text/event-stream; charset=utf-8"
    assert result.header("x-accel-buffering") == "no"
    assert result.chunks[0] == b": \n"  # opens the stream so the head goes out at once
    assert result.chunks[1:] == [f"event: tick\nid: {n}\ndata: {n}\n\n".encode() for n in range(3)]
    assert closed == ["closed"]


def test_sse_heartbeat_comments_while_idle() -> None:
    def stream(writer: SSEWriter) -> None:
        gevent.sleep(0.2)
        writer.send_event("late")
        writer.close()

    result = call(sse_app(stream, heartbeat=0.03), make_environ(path="/events"))
    assert result.chunks[-1] == b"data: late\n\n"
    assert result.chunks[:-1].count(b": \n") >= 3


def test_sse_close_kills_the_callback_and_runs_on_close() -> None:
    trail: list[str] = []

    def stream(writer: SSEWriter) -> None:
        writer.on_close(lambda: trail.append("on_close"))
        try:
            while True:
                writer.send_event("x")
                gevent.sleep(0.01)
        finally:
            trail.append("finally")

    _head, result = start(sse_app(stream), make_environ(path="/events"))
    iterator = iter(result)
    assert next(iterator) == b": \n"
    assert next(iterator) == b"data: x\n\n"
    result.close()  # type: ignore[attr-defined]  # what a WSGI server does when the client left
    assert trail == ["on_close", "finally"]
    result.close()  # type: ignore[attr-defined]  # idempotent


def test_sse_backpressure_when_nobody_drains() -> None:
    outcome: list[BaseException] = []

    def stream(writer: SSEWriter) -> None:
        try:
            for n in range(10):
                writer.send_event(str(n))
        except BackpressureDetected as exc:
            outcome.append(exc)

    adapter = WSGIAdapter(sse_app(stream), sse_queue_size=2, sse_send_timeout=0.05)
    _head, result = start(adapter, make_environ(path="/events"))
    deadline = time.monotonic() + 5
    while not outcome and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert outcome and "took no event" in str(outcome[0])
    chunks = list(result)
    result.close()  # type: ignore[attr-defined]
    assert chunks == [b": \n", b"data: 0\n\n", b"data: 1\n\n"]


def test_sse_head_request_runs_no_callback() -> None:
    ran: list[int] = []
    result = call(sse_app(lambda w: ran.append(1)), make_environ("HEAD", "/events"))
    assert result.status_code == 200 and result.body == b""
    gevent.sleep(0.01)
    assert ran == []


def test_sse_failing_callback_ends_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    def stream(writer: SSEWriter) -> None:
        writer.send_event("one")
        raise ValueError("boom")

    result = call(sse_app(stream), make_environ(path="/events"))
    assert result.chunks == [b": \n", b"data: one\n\n"]
    assert "boom" in caplog.text


# -- a WSGI server without gevent: one OS thread per request --------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = False  # server_close() joins every request thread: none leaks


def _read_events(port: int, count: int, out: list[list[str]]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/events")
        response = conn.getresponse()
        assert response.status == 200
        lines: list[str] = []
        while len([line for line in lines if line.startswith("data:")]) < count:
            line = response.fp.readline()
            if not line:
                break
            lines.append(line.decode().rstrip("\n"))
        out.append(lines)
    finally:
        conn.close()


def test_sse_under_threaded_wsgiref_without_gevent() -> None:
    """Each stream runs on its own thread's hub; two streams at once, no deadlock."""

    def stream(writer: SSEWriter) -> None:
        with writer:
            for n in range(3):
                writer.send_event(f"{writer.event.remote_addr}-{n}")
                time.sleep(0.01)  # a blocking sleep holds up this stream's thread only

    threads_before = threading.active_count()
    server = make_server("127.0.0.1", 0, sse_app(stream), _ThreadingWSGIServer, _QuietHandler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        results: list[list[str]] = []
        clients = [threading.Thread(target=_read_events, args=(port, 3, results)) for _ in range(2)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(10)
        assert len(results) == 2
        for lines in results:
            assert [line for line in lines if line.startswith("data:")] == [
                f"data: 127.0.0.1-{n}" for n in range(3)
            ]
        # Each stream made a hub (an event loop, with file descriptors) on its thread and
        # destroyed it: sequential streams leave the descriptor count where it was.
        fds = len(os.listdir("/proc/self/fd"))
        for _ in range(10):
            _read_events(port, 3, results)
        assert len(results) == 12
        deadline = time.monotonic() + 5
        while len(os.listdir("/proc/self/fd")) > fds and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(os.listdir("/proc/self/fd")) <= fds
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert not thread.is_alive()
    assert threading.active_count() == threads_before


def test_closing_a_body_that_fails_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class BadClose(Tracked):
        def close(self) -> None:
            raise OSError("close failed")

    app = H3()
    app.get("/s", lambda e: _with_body(BadClose([b"a"])))
    _head, result = start(app, make_environ(path="/s"))
    assert iter(result) is not None
    assert list(result) == [b"a"]
    result.close()  # type: ignore[attr-defined]
    assert "closing a response body failed" in caplog.text


def test_held_body_is_its_own_iterator() -> None:
    from h3green.wsgi_adapter import _HeldBody

    rest = iter([b"y"])
    iterator = _HeldBody(b"x", rest, [b"x", b"y"])
    assert iter(iterator) is iterator
    assert list(iterator) == [b"x", b"y"]


def test_sse_transport_after_close_and_full_finish() -> None:
    from h3green import ConnectionLost
    from h3green._wsgi_stream import END, QueueTransport

    transport = QueueTransport(1, 0)
    transport.send(b"data: 1\n\n")
    transport.finish()  # the queue is full: the flag alone ends the body
    assert transport.finished and transport.queue.get() == b"data: 1\n\n"
    transport.closed = True
    with pytest.raises(ConnectionLost):
        transport.send(b"data: 2\n\n")
    empty = QueueTransport(1, 0)
    empty.finish()
    assert empty.queue.get() is END


def test_sse_without_heartbeat_waits_for_events() -> None:
    def stream(writer: SSEWriter) -> None:
        gevent.sleep(0.05)
        writer.send_event("only")
        writer.close()

    result = call(sse_app(stream, heartbeat=0), make_environ(path="/events"))
    assert result.chunks == [b": \n", b"data: only\n\n"]


def test_channel_through_wsgi_and_a_dropped_subscriber() -> None:
    from h3green.sse import Channel

    channel = Channel(max_queue_events=4)
    closed: list[str] = []

    def stream(writer: SSEWriter) -> None:
        writer.on_close(lambda: closed.append("closed"))
        channel.listen(writer)

    adapter = WSGIAdapter(sse_app(stream), sse_queue_size=2, sse_send_timeout=5)
    _head, result = start(adapter, make_environ(path="/events"))
    iterator = iter(result)
    assert next(iterator) == b": \n"
    deadline = time.monotonic() + 5
    while not len(channel) and time.monotonic() < deadline:
        gevent.sleep(0.01)
    channel.publish("one", event="news")
    assert next(iterator) == b"event: news\nid: 1\ndata: one\n\n"
    # Nobody drains now: the WSGI queue fills, then the channel's own queue, and the
    # channel drops the subscriber without waiting; the body ends at once.
    for n in range(12):
        channel.publish(str(n))
        gevent.sleep(0.001)
    deadline = time.monotonic() + 5
    while len(channel) and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert len(channel) == 0
    assert list(iterator) == []
    result.close()  # type: ignore[attr-defined]
    assert closed == ["closed"]
