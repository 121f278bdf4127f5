"""How a running stream works on the native server, checked by structure, not by time:
one greenlet per stream, writes coalesced into one send, heartbeats from one timer without
a greenlet switch, keep-alive after a stream, and the access line each stream ends with."""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
import gevent.event
import greenlet  # type: ignore[import-untyped]
import h11
import pytest
from gevent import socket as gsocket
from helpers import RawClient, live_greenlets, wait_until

from h3green import H3, BackpressureDetected, Channel, ConnectionLost, H3Event, Headers, Server, SSEWriter
from h3green._heartbeat import Heartbeats, heartbeats
from h3green._listener import ConnectionGreenlet
from h3green._stream import Stream
from h3green.config import Config
from h3green.testing import TestClient, _MemorySocket


def sse_app(callback: Any, heartbeat: float | None = None) -> H3:
    app = H3()

    @app.get("/ping")
    def ping(event: H3Event) -> str:
        return "pong"

    @app.get("/s")
    def handler(event: H3Event) -> None:
        event.start_sse(heartbeat=heartbeat)
        event.set_stream_callback(callback)

    return app


def parked(gate: gevent.event.Event) -> Any:
    def callback(writer: SSEWriter) -> None:
        writer.send_event("hello")
        gate.wait()

    return callback


# -- one greenlet per stream ----------------------------------------------------------------


@pytest.mark.live
def test_an_open_stream_keeps_only_its_callback_greenlet(serve_app: Any) -> None:
    gate = gevent.event.Event()
    server = serve_app(sse_app(parked(gate)), sse_heartbeat=0)
    baseline = live_greenlets()
    clients = []
    for _ in range(5):
        client = RawClient(server.address)
        client.open("GET", "/s")
        assert next(client.events()).data == "hello"
        clients.append(client)
    wait_until(lambda: len(live_greenlets() - baseline) == 5, 2, "the connection greenlets to end")
    import gc

    connection_greenlets = [g for g in gc.get_objects() if isinstance(g, ConnectionGreenlet) and not g.dead]
    assert connection_greenlets == []
    # Each stream stands for its connection in the registry: limits and shutdown see it.
    assert len(server.connections) == 5 and all(type(c) is Stream for c in server.connections)
    gate.set()
    for client in clients:
        assert [e.data for e in client.events()] == []  # the body ends after the callback
        client.close()


@pytest.mark.live
@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_a_request_pipelined_with_the_stream_request_is_served_after_it(serve_app: Any, parser: str) -> None:
    def two(writer: SSEWriter) -> None:
        writer.send_event("a")
        gevent.sleep(0.01)
        writer.send_event("b")

    server = serve_app(sse_app(two), sse_heartbeat=0, http_parser=parser)
    client = RawClient(server.address)
    # Both requests in one write: the second is read along with the first, before the
    # stream starts, and waits for it.
    client.sock.sendall(b"GET /s HTTP/1.1\r\nhost: x\r\n\r\nGET /ping HTTP/1.1\r\nhost: x\r\n\r\n")
    client.h11.send(h11.Request(method="GET", target="/s", headers=[("host", "x")]))
    client.h11.send(h11.EndOfMessage())
    assert client.next_event().status_code == 200
    assert [e.data for e in client.events()] == ["a", "b"]
    client.h11.start_next_cycle()
    client.h11.send(h11.Request(method="GET", target="/ping", headers=[("host", "x")]))
    client.h11.send(h11.EndOfMessage())
    assert client.next_event().status_code == 200
    assert b"".join(client.pieces()) == b"pong"
    client.close()


# -- coalesced writes -------------------------------------------------------------------------


def test_events_sent_without_yielding_leave_in_one_send(monkeypatch: pytest.MonkeyPatch) -> None:
    sends: list[bytes] = []
    original = _MemorySocket.send

    def counting(self: _MemorySocket, data: bytes, flags: int = 0, timeout: float | None = None) -> int:
        sends.append(bytes(data))
        return original(self, data, flags, timeout)

    monkeypatch.setattr(_MemorySocket, "send", counting)

    def burst(writer: SSEWriter) -> None:
        for n in range(50):
            writer.send_event(str(n))

    response = TestClient(sse_app(burst), sse_heartbeat=0).get("/s")
    assert response.body == b"".join(b"data: %d\n\n" % n for n in range(50))
    # The head, then the 50 events as one chunk with the body's end: two sends in all.
    assert len(sends) == 2
    assert sends[0].startswith(b"HTTP/1.1 200 ") and sends[1].endswith(b"\r\n0\r\n\r\n")
    assert sends[1].count(b"\r\n") == 4  # one chunk (size line, data), then the terminator


@pytest.mark.live
def test_a_burst_larger_than_the_queue_arrives_whole_and_in_order(serve_app: Any) -> None:
    count = 5000

    def burst(writer: SSEWriter) -> None:
        for n in range(count):
            writer.send_event("x" * 100, id=str(n))

    server = serve_app(sse_app(burst), sse_heartbeat=0)
    client = RawClient(server.address)
    client.open("GET", "/s")
    assert [int(e.id or -1) for e in client.events()] == list(range(count))
    client.close()


# -- heartbeats ---------------------------------------------------------------------------------


def test_heartbeats_are_written_by_the_timer_without_waking_the_callback() -> None:
    gate = gevent.event.Event()
    holder: dict[str, Any] = {}

    def callback(writer: SSEWriter) -> None:
        holder["greenlet"] = gevent.getcurrent()
        gate.wait()

    switched_to: list[Any] = []

    def trace(event: str, args: Any) -> None:
        if event in ("switch", "throw"):
            switched_to.append(args[1])

    client = TestClient(sse_app(callback), sse_heartbeat=0.01)
    with client.stream("GET", "/s") as stream:
        lines = stream.iter_lines()
        wait_until(lambda: "greenlet" in holder, 2, "the callback to start")
        previous = greenlet.settrace(trace)
        try:
            assert [next(lines) for _ in range(3)] == [": ", ": ", ": "]
        finally:
            greenlet.settrace(previous)
        # Only the hub (timer and I/O callbacks) and this reader ran: the parked callback
        # was never switched to for a heartbeat.
        assert holder["greenlet"] not in switched_to
        assert {type(g).__name__ for g in switched_to} <= {"Hub", type(gevent.getcurrent()).__name__}
        gate.set()


def test_one_timer_serves_every_stream() -> None:
    gate = gevent.event.Event()
    client = TestClient(sse_app(parked(gate)), sse_heartbeat=30)
    timer = heartbeats()
    before = len(timer)
    streams = [client.stream("GET", "/s") for _ in range(3)]
    for stream in streams:
        assert next(stream.iter_events()).data == "hello"
    assert len(timer) == before + 3 and heartbeats() is timer
    gate.set()
    for stream in streams:
        stream.close()
    # An ended stream leaves its bucket at once: nothing of it waits for its due time.
    assert len(timer) == before


@pytest.mark.live
def test_a_stream_stuck_on_a_full_socket_is_dropped_by_the_heartbeat(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcome: dict[str, Any] = {}
    big = "s" * 32768

    def fill(writer: SSEWriter) -> None:
        writer.on_close(lambda: outcome.setdefault("closed", True))
        transport = writer._transport  # the stream: wait until the kernel refuses more
        while not transport._rest:  # type: ignore[attr-defined]
            writer.send_event(big)
            gevent.sleep(0.005)
        outcome["stuck"] = True
        gevent.sleep(30)

    server = Server(sse_app(fill, heartbeat=0.02), port=0, sse_send_timeout=0.1, access_log=True)
    server.start()
    stuck = RawClient(server.address, rcvbuf=4096)
    try:
        with caplog.at_level(logging.INFO, "h3green.access"):
            stuck.open("GET", "/s")
            wait_until(lambda: "closed" in outcome, 5, "the stuck stream to be dropped")
            wait_until(lambda: not server.connections, 2, "the connection to close")
    finally:
        stuck.close()
        server.stop(timeout=1)
    assert outcome["stuck"]
    assert "stream ended: dropped as slow" in end_line(caplog)


# -- the access line at a stream's end ------------------------------------------------------------


def end_line(caplog: pytest.LogCaptureFixture) -> str:
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "h3green.access" and "stream ended" in r.getMessage()
    ]
    assert len(lines) == 1, lines
    return lines[0]


def test_the_access_log_says_how_a_finished_stream_went(caplog: pytest.LogCaptureFixture) -> None:
    def two(writer: SSEWriter) -> None:
        writer.send_event("ab")
        writer.send_event("cd")

    with caplog.at_level(logging.INFO, "h3green.access"):
        TestClient(sse_app(two), sse_heartbeat=0, access_log=True).get("/s")
    messages = [r.getMessage() for r in caplog.records if r.name == "h3green.access"]
    assert messages[0] == '127.0.0.1 - "GET /s HTTP/1.1" 200 0'  # the head, when it left
    line = end_line(caplog)
    # 2 events of 10 bytes each ("data: ab\n\n").
    assert line.startswith('127.0.0.1 - "GET /s HTTP/1.1" 200 20 stream ended: callback finished after ')
    assert line.endswith(" s, 2 event(s)")


def test_the_access_log_says_a_stream_callback_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(writer: SSEWriter) -> None:
        writer.send_event("x")
        raise ZeroDivisionError("callback bug")

    with caplog.at_level(logging.INFO):
        TestClient(sse_app(broken), sse_heartbeat=0, access_log=True).get("/s")
    assert "stream ended: callback raised after " in end_line(caplog)
    failure = next(r for r in caplog.records if r.name == "h3green" and "callback" in r.getMessage())
    assert failure.exc_info is not None and failure.exc_info[0] is ZeroDivisionError


def test_the_access_log_says_the_client_left(caplog: pytest.LogCaptureFixture) -> None:
    gate = gevent.event.Event()
    with caplog.at_level(logging.INFO, "h3green.access"):
        with TestClient(sse_app(parked(gate)), sse_heartbeat=0, access_log=True).stream(
            "GET", "/s"
        ) as stream:
            assert next(stream.iter_events()).data == "hello"
    line = end_line(caplog)
    assert "200 13 stream ended: client left after " in line and line.endswith(", 1 event(s)")


@pytest.mark.live
def test_the_access_log_says_the_server_shut_the_stream_down(caplog: pytest.LogCaptureFixture) -> None:
    gate = gevent.event.Event()
    server = Server(sse_app(parked(gate)), port=0, sse_heartbeat=0, access_log=True)
    server.start()
    client = RawClient(server.address)
    with caplog.at_level(logging.INFO, "h3green.access"):
        client.open("GET", "/s")
        events = client.events()
        assert next(events).data == "hello"
        server.stop(timeout=2)
        assert [e.event for e in events] == ["shutdown"]
    assert "stream ended: server shutdown after " in end_line(caplog)
    client.close()


@pytest.mark.live
def test_a_stream_that_starts_while_the_server_stops_ends_at_once(serve_app: Any) -> None:
    app = H3()
    server: Server | None = None

    def forever(writer: SSEWriter) -> None:
        gevent.sleep(30)  # pragma: no cover - killed by the shutdown before it runs

    @app.get("/late")
    def late(event: H3Event) -> None:
        assert server is not None
        server.connections.closing = True  # as if stop() began while this request ran
        event.start_sse()
        event.set_stream_callback(forever)

    server = serve_app(app, sse_heartbeat=0)
    client = RawClient(server.address)
    client.open("GET", "/late")
    assert [e.event for e in client.events()] == ["shutdown"]
    wait_until(lambda: not server.connections, 2, "the stream to close")
    client.close()


# -- the stream over a socket pair: a kernel buffer that is full ---------------------------


def unit_stream(sock: Any, **options: Any) -> Stream:
    config = Config(**{"access_log": False, **options})
    event = H3Event("GET", "/s", Headers())
    return Stream(
        sock, ("127.0.0.1", 1), H3(), config, None, event=event, status=200, chunked=True, reusable=False
    )


def fill(sock: Any) -> int:
    """Write into *sock* until the kernel takes no more; the bytes it took."""
    total = 0
    while True:
        try:
            total += sock.send(b"f" * 65536, 0, 0.0)
        except BlockingIOError:
            return total


def read_until(sock: Any, marker: bytes) -> bytes:
    received = b""
    with gevent.Timeout(5):
        while marker not in received:
            data = sock.recv(65536)
            assert data, received[-100:]
            received += data
    return received


def test_what_the_kernel_does_not_take_waits_for_the_socket_in_order() -> None:
    server, client = gsocket.socketpair()
    server.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_SNDBUF, 4096)
    gate = gevent.event.Event()
    stream = unit_stream(server)
    stream.start(lambda writer: gate.wait(), 3600)
    gevent.sleep(0)
    writer = stream.writer
    # A heartbeat due on a full socket: the part the kernel refuses waits for it.
    filled = fill(server)
    writer.last_activity -= 7200
    now = time.monotonic()
    assert stream.heartbeat(now) == now + 3600
    # An event sent meanwhile queues behind it and leaves when the socket drains.
    writer.send_event("after")
    received = read_until(client, b"data: after\n\n")
    assert received[:filled] == b"f" * filled
    assert received[filled:] == b"3\r\n: \n\r\n" + b"d\r\ndata: after\n\n\r\n"
    # Again with a socket that takes nothing at all: the event alone waits.
    filled = fill(server)
    writer.send_event("late")
    assert read_until(client, b"data: late\n\n")[filled:] == b"c\r\ndata: late\n\n\r\n"
    gate.set()
    assert read_until(client, b"0\r\n\r\n").endswith(b"0\r\n\r\n")
    with gevent.Timeout(5):
        assert client.recv(10) == b""  # not reusable: closed after the body's end
    client.close()


def test_a_lost_stream_refuses_writes_and_ends_once() -> None:
    server, client = gsocket.socketpair()
    gate = gevent.event.Event()
    stream = unit_stream(server)
    stream.start(lambda writer: gate.wait(), 0)
    gevent.sleep(0)
    client.close()
    with gevent.Timeout(5):
        while stream.writer.is_active:
            gevent.sleep(0.001)
    with pytest.raises(ConnectionLost):
        stream.send(b"data: x\n\n")
    stream.finish()  # nothing to end any more
    stream.shutdown()  # nor to shut down
    stream.abort()  # lost once: the reason stays
    assert stream.heartbeat(time.monotonic()) == 0.0
    with gevent.Timeout(5):
        while not server.closed:
            gevent.sleep(0.001)


@pytest.mark.live
def test_the_connection_kept_alive_after_a_stream_is_idle_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def one(writer: SSEWriter) -> None:
        writer.send_event("only")

    server = Server(sse_app(one), port=0, access_log=False, sse_heartbeat=0)
    server.start()
    client = RawClient(server.address)
    client.open("GET", "/s")
    assert [e.data for e in client.events()] == ["only"]
    wait_until(
        lambda: any(not isinstance(c, Stream) and c.idle for c in server.connections), 2, "the next cycle"
    )
    with caplog.at_level(logging.INFO, "h3green"):
        server.stop(timeout=5)
    assert "h3green closed 1 idle connection(s)" in caplog.text
    assert "waiting" not in caplog.text  # nothing was in flight
    client.close()


def test_a_failing_heartbeat_costs_the_others_nothing(caplog: pytest.LogCaptureFixture) -> None:
    class Beat:
        def __init__(self, fail: bool) -> None:
            self.fail = fail
            self.calls = 0
            self.heartbeat_key = 0

        def heartbeat(self, now: float) -> float:
            self.calls += 1
            if self.fail:
                raise RuntimeError("bug")
            return 0.0  # done: not bucketed again

    timer = Heartbeats(gevent.get_hub().loop)
    broken, healthy = Beat(True), Beat(False)
    due = time.monotonic() - 1
    timer.add(broken, due)
    timer.add(healthy, due)
    assert len(timer) == 2
    stranger = Beat(False)
    stranger.heartbeat_key = broken.heartbeat_key  # its bucket, though never added
    timer.remove(stranger)
    assert len(timer) == 2
    with caplog.at_level(logging.ERROR, "h3green"):
        timer._tick()
    assert (broken.calls, healthy.calls) == (1, 1) and len(timer) == 0
    assert "heartbeat of" in caplog.text


@pytest.mark.live
def test_a_subscriber_its_channel_drops_sees_backpressure(serve_app: Any) -> None:
    channel = Channel(max_queue_bytes=100)
    outcome: dict[str, Any] = {}

    def listen(writer: SSEWriter) -> None:
        try:
            channel.listen(writer)
        except BaseException as exc:
            outcome["raised"] = type(exc)
            raise

    server = serve_app(sse_app(listen), sse_heartbeat=0)
    client = RawClient(server.address)
    client.open("GET", "/s")
    wait_until(lambda: len(channel) == 1, 2, "the subscriber")
    channel.publish("d" * 400)  # more than the subscriber may queue: dropped at once
    wait_until(lambda: "raised" in outcome, 2, "the listener to end")
    # What Channel.listen documents, not a kill from the server in between.
    assert outcome["raised"] is BackpressureDetected
    wait_until(lambda: not server.connections, 2, "the connection to close")
    client.close()


def test_the_access_log_says_the_client_sent_too_much(caplog: pytest.LogCaptureFixture) -> None:
    gate = gevent.event.Event()
    client = TestClient(sse_app(parked(gate)), sse_heartbeat=0, access_log=True, max_header_bytes=4096)
    with caplog.at_level(logging.INFO, "h3green.access"):
        with client.stream("GET", "/s") as stream:
            assert next(stream.iter_events()).data == "hello"
            stream._client.sock.feed(b"GET /" + b"a" * 5000)  # a next head past the limit
            with pytest.raises(h11.RemoteProtocolError, match="incomplete chunked read"):
                list(stream.iter_events())  # the connection was dropped mid-body
    assert "stream ended: client sent too much after " in end_line(caplog)


@pytest.mark.live
def test_a_callback_that_outlives_its_dropped_stream_is_ended(serve_app: Any) -> None:
    outcome: dict[str, Any] = {}
    big = "b" * 32768

    def stubborn(writer: SSEWriter) -> None:
        try:
            while True:
                writer.send_event(big)
        except BackpressureDetected:
            outcome["dropped"] = True
        try:
            gevent.sleep(30)  # carries on as if nothing happened
        except gevent.GreenletExit:
            outcome["killed"] = True
            raise

    server = serve_app(sse_app(stubborn), sse_heartbeat=0, sse_send_timeout=0.2)
    client = RawClient(server.address, rcvbuf=4096)
    client.open("GET", "/s")
    wait_until(lambda: "killed" in outcome, 5, "the callback to be ended")
    assert outcome["dropped"]
    wait_until(lambda: not server.connections, 2, "the connection to close")
    client.close()
