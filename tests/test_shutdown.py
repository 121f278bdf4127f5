"""Graceful shutdown over real sockets: what each kind of connection sees, and the log."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import gevent.event
import gevent.socket
import pytest
from _rawhttp import RawClient, live_greenlets, wait_until, warm_up

from h3green import H3, H3Event, Server, SSEWriter

pytestmark = pytest.mark.live

GET = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"


class Gate:
    def __init__(self) -> None:
        self.entered = gevent.event.Event()
        self.release = gevent.event.Event()


def make_app(gate: Gate) -> H3:
    app = H3()
    app.get("/ping", lambda event: "pong")

    @app.get("/slow")
    def slow(event: H3Event) -> str:
        gate.entered.set()
        gate.release.wait(10)
        return "finished"

    def ticks(writer: SSEWriter) -> None:
        with writer:
            for i in range(10_000):
                writer.send_event(data=str(i))
                gevent.sleep(0.05)

    @app.get("/events")
    def events(event: H3Event) -> None:
        event.start_sse()
        event.set_stream_callback(ticks)

    return app


@pytest.fixture
def gate() -> Iterator[Gate]:
    warm_up()
    before = live_greenlets()
    gate = Gate()
    yield gate
    gate.release.set()
    assert wait_until(lambda: live_greenlets() <= before), live_greenlets() - before


def test_graceful_stop_sequence(gate: Gate, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="h3green")
    server = Server(make_app(gate), port=0, access_log=False)
    server.start()
    address = server.address
    with RawClient(address) as idle, RawClient(address) as busy, RawClient(address) as stream:
        idle.send(GET % b"/ping")
        assert (r := idle.response()) is not None and r.status == 200
        stream.send(GET % b"/events")
        assert (head := stream.response(head_only=True)) is not None and head.status == 200
        busy.send(GET % b"/slow")
        assert gate.entered.wait(3)

        stopping = gevent.spawn(server.stop, 5.0)
        # Idle keep-alive connections are closed at once.
        started = time.monotonic()
        assert idle.closed_by_server(1.0) and not idle.reset
        assert time.monotonic() - started < 0.5
        # Open streams get their final event, then the end of the stream.
        assert wait_until(
            lambda: b"event: shutdown" in stream.buffer or not stream._fill(time.monotonic() + 3)
        )
        assert stream.closed_by_server(2.0) or b"event: shutdown" in stream.buffer
        assert b"event: shutdown" in stream.buffer and stream.buffer.rstrip().endswith(b"0")
        # No new connections.
        with pytest.raises(OSError):
            RawClient(address, timeout=1.0).close()
        # The request in flight finishes, told the connection ends with it.
        assert not stopping.dead
        gate.release.set()
        finished = busy.response()
        assert finished is not None and finished.status == 200 and finished.body == b"finished"
        assert finished.header("connection") == "close"
        assert busy.closed_by_server()
        stopping.join(2.0)
        assert stopping.dead and stopping.successful()
    messages = [r.getMessage() for r in caplog.records if r.name == "h3green"]
    start = messages.index("h3green shutting down: 3 open connection(s)")
    assert messages[start:] == [
        "h3green shutting down: 3 open connection(s)",
        "h3green closed 1 idle connection(s)",
        "h3green sent the shutdown event to 1 stream(s)",
        "h3green waiting up to 5.0 s for 1 request(s) in flight",
        "h3green stopped",
    ], messages
    assert not any("cutting" in m for m in messages)


def test_what_outlives_the_shutdown_timeout_is_cut(gate: Gate, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="h3green")
    server = Server(make_app(gate), port=0, access_log=False)
    server.start()
    with RawClient(server.address) as busy:
        busy.send(GET % b"/slow")
        assert gate.entered.wait(3)
        started = time.monotonic()
        server.stop(0.3)
        elapsed = time.monotonic() - started
        assert 0.25 < elapsed < 1.0
        assert busy.closed_by_server(1.0)
    assert caplog.messages[-4:] == [
        "h3green shutting down: 1 open connection(s)",
        "h3green waiting up to 0.3 s for 1 request(s) in flight",
        "h3green cutting 1 connection(s) still open after 0.3 s",
        "h3green stopped",
    ]


def test_a_request_arriving_on_a_kept_alive_connection_during_shutdown_is_answered(gate: Gate) -> None:
    """A connection that has begun a next request is not idle: it gets its answer."""
    server = Server(make_app(gate), port=0, access_log=False)
    server.start()
    with RawClient(server.address) as busy, RawClient(server.address) as late:
        late.send(GET % b"/ping")
        assert late.response() is not None
        late.send(b"GET /ping HTTP/1.1\r\n")  # half a head: no longer idle
        busy.send(GET % b"/slow")
        assert gate.entered.wait(3)
        stopping = gevent.spawn(server.stop, 3.0)
        gevent.sleep(0.05)
        late.send(b"Host: t\r\n\r\n")
        answer = late.response()
        assert answer is not None and answer.status == 200 and answer.header("connection") == "close"
        gate.release.set()
        assert busy.response() is not None
        stopping.join(3.0)
        assert stopping.dead


CLI_APP = textwrap.dedent(
    """
    import time
    from h3green import H3

    app = H3()

    @app.get("/slow")
    def slow(event):
        time.sleep(0.5)
        return "finished"
    """
)


def test_cli_finishes_the_request_in_flight_on_sigterm_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "slowapp.py").write_text(CLI_APP)
    proc = subprocess.Popen(
        [sys.executable, "-m", "h3green", "slowapp:app", "--port", "0", "--no-access-log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if found := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
                port = int(found.group(1))
        assert port is not None, "the CLI did not start"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(GET % b"/slow")
            time.sleep(0.1)  # the request is in flight (the handler sleeps 0.5 s)
            proc.send_signal(signal.SIGTERM)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        output, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"finished")
    assert b"connection: close" in data.lower()
    assert proc.returncode == 0
    assert "h3green shutting down: 1 open connection(s)" in output
    assert "h3green stopped" in output
    assert "Traceback" not in output


def test_a_new_connection_accepted_during_shutdown_gets_its_answer(gate: Gate) -> None:
    """A connection that never carried a request is not idle: its client has most likely
    sent the request already, and closing it unread would reset it (a SIGHUP or a rolling
    restart under gunicorn accepts such connections while the old worker stops)."""
    from h3green._connection import Connection
    from h3green._listener import Registry
    from h3green.config import Config

    registry = Registry()
    registry.closing = True  # stop() has begun
    ours, theirs = gevent.socket.socketpair()
    try:
        theirs.sendall(GET % b"/ping")
        conn = Connection(ours, ("127.0.0.1", 1), make_app(gate), Config(access_log=False), registry)
        assert not conn.idle
        runner = gevent.spawn(conn.run)
        theirs.settimeout(3)
        answer = b""
        while chunk := theirs.recv(65536):
            answer += chunk
        runner.join(3)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b"\r\nconnection: close\r\n" in answer.lower()
        assert runner.dead and not registry
    finally:
        theirs.close()
        ours.close()
