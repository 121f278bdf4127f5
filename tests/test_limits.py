"""Slow readers, overload, accept-loop exhaustion and safe defaults, over real sockets."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
from helpers import RawClient, live_greenlets, wait_until, warm_up

import h3green
from h3green import H3, H3Event, Server, SSEWriter
from h3green.response import Response
from h3green.server import Config

pytestmark = pytest.mark.live

GET = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"
BIG = b"x" * (16 * 1024 * 1024)


def stream_ticks(writer: SSEWriter) -> None:
    with writer:
        for i in range(1000):
            writer.send_event(data=str(i))
            gevent.sleep(0.02)


def make_app() -> H3:
    app = H3()
    app.get("/ping", lambda event: "pong")
    app.get("/big", lambda event: BIG)
    app.get("/big-stream", lambda event: (BIG[i : i + 65536] for i in range(0, len(BIG), 65536)))

    @app.get("/events")
    def events(event: H3Event) -> None:
        event.start_sse()
        event.set_stream_callback(stream_ticks)

    @app.get("/boom")
    def boom(event: H3Event) -> None:
        raise RuntimeError("secret detail at /srv/app.py")

    @app.get("/bad-header")
    def bad_header(event: H3Event) -> str:
        try:
            event.set_header("x-injected", "a\r\nSet-Cookie: evil=1")
        except ValueError as exc:
            return f"refused: {exc}"
        return "accepted"

    @app.get("/bad-response-header")
    def bad_response_header(event: H3Event) -> Response:
        return Response("x", headers={"x-injected": "a\nb"})

    return app


@pytest.fixture
def serve(request: pytest.FixtureRequest) -> Iterator[object]:
    servers: list[Server] = []
    warm_up()
    before = live_greenlets()

    def start(app: H3 | None = None, **options: object) -> Server:
        server = Server(app or make_app(), port=0, **options)  # type: ignore[arg-type]
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(1.0)
    wait_until(lambda: live_greenlets() <= before, what=lambda: live_greenlets() - before)


# -- write timeout -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/big", "/big-stream"])
def test_a_client_that_never_reads_is_cut_after_write_timeout(serve: object, path: str) -> None:
    server = serve(write_timeout=0.3)  # type: ignore[operator]
    with RawClient(server.address, rcvbuf=4096) as client:
        started = time.monotonic()
        client.send(GET % path.encode())
        wait_until(lambda: len(server.connections) == 1, 2.0)
        wait_until(lambda: not server.connections, 3.0, what="the server to drop the non-reading client")
        assert 0.25 < time.monotonic() - started < 2.5


# -- overload ------------------------------------------------------------------------------


def test_past_max_connections_new_clients_get_503_and_old_ones_carry_on(serve: object) -> None:
    server = serve(max_connections=2)  # type: ignore[operator]
    with RawClient(server.address) as first, RawClient(server.address) as second:
        for client in (first, second):
            client.send(GET % b"/ping")
            response = client.response()
            assert response is not None and response.status == 200
        wait_until(lambda: len(server.connections) == 2)
        with RawClient(server.address) as third:
            refused = third.response()
            assert refused is not None and refused.status == 503
            assert refused.header("retry-after") == "1"
            assert refused.header("connection") == "close"
            assert json.loads(refused.body)["status"] == 503
            assert third.closed_by_server() and not third.reset
        for client in (first, second):  # unaffected, still kept alive
            client.send(GET % b"/ping")
            response = client.response()
            assert response is not None and response.status == 200
    # Once they leave, the slots come back.
    wait_until(lambda: not server.connections)
    with RawClient(server.address) as fourth:
        fourth.send(GET % b"/ping")
        response = fourth.response()
        assert response is not None and response.status == 200


def test_an_open_stream_counts_and_keeps_streaming_while_others_are_refused(serve: object) -> None:
    server = serve(max_connections=1)  # type: ignore[operator]
    with RawClient(server.address) as streamer:
        streamer.send(GET % b"/events")
        head = streamer.response(head_only=True)
        assert head is not None and head.status == 200
        wait_until(lambda: b"data: 2\n" in streamer.buffer or not streamer.fill(time.monotonic() + 2))
        with RawClient(server.address) as refused:
            response = refused.response()
            assert response is not None and response.status == 503
        seen = len(streamer.buffer)
        wait_until(lambda: streamer.fill(time.monotonic() + 2) and len(streamer.buffer) > seen + 20)


@pytest.mark.parametrize(("linger", "limit"), [(None, 2.5), (0.2, 0.9)])
def test_a_refused_client_that_keeps_sending_is_still_cut(
    serve: object, linger: float | None, limit: float
) -> None:
    options = {} if linger is None else {"linger_timeout": linger}
    server = serve(max_connections=1, **options)  # type: ignore[operator]
    with RawClient(server.address) as holder:
        holder.send(GET % b"/ping")
        assert holder.response() is not None
        with RawClient(server.address) as pest:
            started = time.monotonic()
            assert (response := pest.response()) is not None and response.status == 503
            while time.monotonic() - started < 3.0 and not pest.send_failed:
                pest.send([b"x" * 1024, 0.05])
            assert pest.send_failed
            assert time.monotonic() - started < limit


EMFILE_CHILD = textwrap.dedent(
    """
    import os, resource, sys, time, logging, gevent, gevent.socket
    from h3green import H3, Server
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(message)s")
    app = H3()
    app.get("/", lambda event: "served")
    server = Server(app, port=0, access_log=False)
    server.start()
    client = gevent.socket.create_connection(server.address)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    hogs = []
    try:
        while True:
            hogs.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    client.sendall(b"GET / HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
    cpu = sum(os.times()[:2])
    gevent.sleep(1.5)          # accept() fails with EMFILE all this while
    cpu = sum(os.times()[:2]) - cpu
    for fd in hogs:
        os.close(fd)
    client.settimeout(5)
    reply = client.recv(4096)
    print("CPU", round(cpu, 3))
    print("REPLY", reply.split(b"\\r\\n")[0].decode(), reply.endswith(b"served"))
    server.stop(1)
    """
)


def test_accept_errors_back_off_quietly_instead_of_spinning(tmp_path: Path) -> None:
    script = tmp_path / "emfile.py"
    script.write_text(EMFILE_CHILD)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "REPLY HTTP/1.1 200 OK True" in out, out
    assert float(re.search(r"CPU ([\d.]+)", out).group(1)) < 0.5, out  # type: ignore[union-attr]
    retries = out.count("cannot accept connections (Too many open files)")
    assert 3 <= retries <= 12, out  # 0.01 s doubling to 1 s: about 8 in 1.5 s
    assert "Traceback" not in result.stderr + out


# -- safe defaults -------------------------------------------------------------------------


def test_no_traceback_path_or_version_in_a_500_unless_debug(serve: object) -> None:
    server = serve(access_log=False)  # type: ignore[operator]
    with RawClient(server.address) as client:
        client.send(GET % b"/boom")
        response = client.response()
    assert response is not None and response.status == 500
    assert response.header("server") is None
    for secret in (b"secret", b"Traceback", b".py", b"RuntimeError", h3green.__version__.encode(), b"gevent"):
        assert secret not in response.body
    for _, value in response.headers:
        assert "h3green" not in value and "python" not in value.lower()

    debug_app = make_app()
    debug_app.debug = True
    debug_server = serve(debug_app, access_log=False)  # type: ignore[operator]
    with RawClient(debug_server.address) as client:
        client.send(GET % b"/boom")
        response = client.response()
    assert response is not None and response.status == 500 and b"Traceback" in response.body


def test_server_header_is_off_by_default_and_configurable(serve: object) -> None:
    server = serve(server_header="h3green")  # type: ignore[operator]
    with RawClient(server.address) as client:
        client.send(GET % b"/ping")
        ok = client.response()
        client.send(b"GET / HTTP/1.1\r\n\r\n")  # no Host: rejected by the driver
        bad = client.response()
    assert ok is not None and ok.header("server") == "h3green"
    assert bad is not None and bad.status == 400 and bad.header("server") == "h3green"
    assert bad.header("date") is not None
    assert Config().server_header is None


def test_crlf_in_a_header_value_is_refused_at_the_api(
    serve: object, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(access_log=False)  # type: ignore[operator]
    with RawClient(server.address) as client:
        client.send(GET % b"/bad-header")
        refused = client.response()
        client.send(GET % b"/bad-response-header")
        failed = client.response()
    assert refused is not None and refused.status == 200
    assert refused.body.startswith(b"refused: header 'x-injected' value contains CR, LF or NUL")
    assert refused.header("set-cookie") is None
    # Building a Response with such a header is a programming error: a logged 500.
    assert failed is not None and failed.status == 500 and failed.header("x-injected") is None
    assert any("contains CR, LF or NUL" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_every_config_field_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Limits and defaults", 1)[1].split("\n## ", 1)[0]
    for field in dataclasses.fields(Config):
        assert f"`{field.name}`" in section, f"{field.name} is not in README's Limits and defaults"


# -- in-process checks of the same paths (the subprocess above is not measured) --------


def test_accept_back_off_doubles_then_resets(serve: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from gevent.server import StreamServer

    failures = [errno.EMFILE, errno.ENFILE, errno.EMFILE]
    real = StreamServer.do_read

    def flaky(self: StreamServer) -> object:
        if failures:
            raise OSError(failures.pop(0), os.strerror(errno.EMFILE))
        return real(self)

    monkeypatch.setattr(StreamServer, "do_read", flaky)
    server = serve(access_log=False)  # type: ignore[operator]
    listener = server._server
    with RawClient(server.address) as client:
        client.send(GET % b"/ping")
        response = client.response()
    assert response is not None and response.status == 200
    assert not failures and listener.accept_delay == listener.min_delay

    failures.append(errno.EINVAL)  # not exhaustion: gevent's own handling applies
    with pytest.raises(OSError):
        listener.do_read()


def test_stop_while_accepting_is_paused(serve: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from gevent.server import StreamServer

    def exhausted(self: StreamServer) -> object:
        raise OSError(errno.EMFILE, "Too many open files")

    server = serve(access_log=False)  # type: ignore[operator]
    monkeypatch.setattr(StreamServer, "do_read", exhausted)
    client = RawClient(server.address)
    listener = server._server
    wait_until(lambda: listener._resume_timer is not None)
    server.stop(0.5)
    assert listener._resume_timer is None
    assert client.closed_by_server()
    client.close()


def test_refused_connections_beyond_the_overflow_are_closed_without_a_word(serve: object) -> None:
    server = serve(max_connections=1, access_log=False)  # type: ignore[operator]
    with RawClient(server.address) as holder, RawClient(server.address) as refused:
        holder.send(GET % b"/ping")
        assert holder.response() is not None
        # ``refused`` reads its 503 but does not close: its refusal lingers for a second.
        assert (answer := refused.response()) is not None and answer.status == 503
        with RawClient(server.address) as dropped:
            assert dropped.closed_by_server() and dropped.buffer == b""


def test_rejection_fallbacks_over_the_memory_socket() -> None:
    from h3green._respond import reject
    from h3green.server import Connection
    from h3green.testing import _MemorySocket

    config = Config(access_log=False)
    # h11 has already sent a head, so it refuses to frame another: our own bytes go out.
    sock = _MemorySocket()
    conn = Connection(sock, ("127.0.0.1", 1), make_app(), config)
    conn.driver.receive_data(GET % b"/ping")
    conn.driver.next_event()
    conn.driver.head(200, [(b"content-length", b"1")])
    sock.inbound.put(b"")  # the client's end, so the lingering close ends at once
    reject(conn, 400, "bad")
    out = sock.outbound.get(timeout=1)
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n") and out.endswith(b'"message":"bad"}')
    # A client that is gone: nothing to send to, nothing raised.
    sock = _MemorySocket()
    conn = Connection(sock, ("127.0.0.1", 1), make_app(), config)
    sock.close()
    reject(conn, 400, "bad")


def test_a_stream_is_exempt_from_the_idle_and_head_timeouts(serve: object) -> None:
    def slow_ticks(writer: SSEWriter) -> None:
        with writer:
            for i in range(3):
                gevent.sleep(0.3)
                writer.send_event(data=f"slow {i}")

    app = make_app()
    app.get("/slow-events", lambda event: (event.start_sse(), event.set_stream_callback(slow_ticks))[0])
    server = serve(app, keepalive_timeout=0.1, header_timeout=0.1, sse_heartbeat=0)  # type: ignore[operator]
    with RawClient(server.address) as client:
        client.send(GET % b"/slow-events")
        response = client.response()  # chunked: read to the end of the stream
    assert response is not None and response.status == 200
    assert [line for line in response.body.split(b"\n") if line.startswith(b"data:")] == [
        b"data: slow 0",
        b"data: slow 1",
        b"data: slow 2",
    ]
