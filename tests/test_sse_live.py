"""Server guarantees for SSE over real sockets on 127.0.0.1: no stall, isolation,
disconnect, slow readers, shutdown, and a real SSE client library (httpx-sse)."""

from __future__ import annotations

import logging
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import httpx
import httpx_sse
import pytest
from gevent import subprocess as gsubprocess
from helpers import TESTS, RawClient, counter_app, live_greenlets, start_cli, wait_until

from h3green import H3, BackpressureDetected, ConnectionLost, H3Event, Server, SSEWriter
from h3green.sse import encode_event

pytestmark = pytest.mark.live


def in_thread(fn: Any, timeout: float = 10.0) -> Any:
    """Run blocking (unpatched) client code in a real thread while the loop serves."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised in the test's greenlet
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_until(lambda: not thread.is_alive(), timeout, "the client thread")
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * pct // 100) - 1)]


def count_events(pieces: Iterator[bytes]) -> int:
    """Events in a body read piece by piece (none of these events begins with a LF)."""
    total = 0
    last = b""
    for piece in pieces:
        total += (last + piece).count(b"\n\n")
        last = piece[-1:]
    return total


# -- 9: no stall ----------------------------------------------------------------------------


def test_no_stall_500_streams_while_gets_answer() -> None:
    # The server runs in a process of its own (the CLI, monkey patched, streams sleeping
    # with time.sleep), the 500 stream readers in another; this process only times GETs,
    # so a tracer here (the coverage run) cannot slow the server being measured.
    streams, interval = 500, 0.05
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * streams:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * streams), hard))
    server, port = start_cli(
        "helpers.ticking:app", "--sse-heartbeat", "0", env={"TICK_INTERVAL": str(interval)}
    )
    readers = gsubprocess.Popen(
        [
            sys.executable,
            str(TESTS / "helpers" / "sse_stream_readers.py"),
            "127.0.0.1",
            str(port),
            str(streams),
            "/events",
        ],
        stdin=gsubprocess.PIPE,
        stdout=gsubprocess.PIPE,
    )
    assert readers.stdin is not None and readers.stdout is not None
    try:
        with gevent.Timeout(30):
            assert readers.stdout.readline() == b"started\n"
        plain = RawClient(("127.0.0.1", port))
        # Up to three windows of GETs: a stall caused by the streams shows in every one,
        # while a moment when other processes starve this one of CPU shows in one at most.
        windows: list[list[float]] = []
        while len(windows) < 3 and (not windows or percentile(windows[-1], 99) >= 50):
            latencies: list[float] = []
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and len(latencies) < 300:
                start = time.perf_counter()
                status, body = plain.get("/ping")
                latencies.append((time.perf_counter() - start) * 1000)
                assert (status, body) == (200, b"pong")
                gevent.sleep(0.002)
            windows.append(latencies)
        plain.close()
        readers.stdin.write(b"stop\n")
        readers.stdin.flush()
        with gevent.Timeout(10):
            fewest = int(readers.stdout.readline())
            assert readers.wait() == 0
    finally:
        for proc in (readers, server):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        readers.stdin.close()
        readers.stdout.close()
        assert server.stdout is not None
        server.stdout.close()
    for latencies in windows:
        print(
            f"\nno-stall: {streams} streams every {interval * 1000:.0f} ms, {len(latencies)} GETs, "
            f"p50 {percentile(latencies, 50):.2f} ms, p99 {percentile(latencies, 99):.2f} ms, "
            f"max {max(latencies):.2f} ms; every stream got >= {fewest} events in all"
        )
    # The streams kept flowing, every one of them, while the GETs were answered.
    assert fewest >= 2
    assert len(windows[-1]) >= 100
    assert percentile(windows[-1], 99) < 50


# -- 10: isolation --------------------------------------------------------------------------


def test_callback_exception_is_isolated(serve_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = counter_app(interval=0.01)

    def broken(writer: SSEWriter) -> None:
        writer.send_event("first")
        raise ZeroDivisionError("callback bug")

    @app.get("/broken")
    def broken_handler(event: H3Event) -> None:
        event.start_sse()
        event.set_stream_callback(broken)

    server = serve_app(app, sse_heartbeat=0)
    healthy = RawClient(server.address)
    healthy.open("GET", "/events")
    healthy_events = healthy.events()
    assert next(healthy_events).data == "0"
    client = RawClient(server.address)
    with caplog.at_level(logging.ERROR, "h3green"):
        response = client.open("GET", "/broken")
        assert response.status_code == 200
        # The body ends with the chunked terminator: h11 sees a complete message.
        assert [e.data for e in client.events()] == ["first"]
        assert client.h11.their_state is h11_done()
    # The connection is reused for the next request.
    client.h11.start_next_cycle()
    assert client.get("/ping") == (200, b"pong")
    record = next(r for r in caplog.records if "stream callback" in r.getMessage())
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
    # The other client never noticed.
    ids = [int(next(healthy_events).id or 0) for _ in range(5)]
    assert ids == sorted(ids) and ids[0] >= 1
    client.close()
    healthy.close()


def h11_done() -> Any:
    import h11

    return h11.DONE


# -- 11: disconnect -------------------------------------------------------------------------


def test_disconnect_kills_sleeping_callback_fast_and_leaks_nothing(serve_app: Any) -> None:
    clients_count = 20
    app = H3()
    records: list[dict[str, Any]] = []
    all_started = gevent.event.Event()

    def sleeper(writer: SSEWriter) -> None:
        record: dict[str, Any] = {"writer": writer}
        records.append(record)
        writer.on_close(lambda: record.setdefault("on_close", time.monotonic()))
        writer.on_close(lambda: record.__setitem__("hooks", record.get("hooks", 0) + 1))
        writer.send_event("hello")
        if len(records) == clients_count:
            all_started.set()
        try:
            gevent.sleep(60)
        except gevent.GreenletExit:
            record["exit"] = True
            raise
        finally:
            record["finally"] = time.monotonic()

    @app.get("/sleep")
    def handler(event: H3Event) -> None:
        event.start_sse()
        event.set_stream_callback(sleeper)

    server = serve_app(app, sse_heartbeat=0)
    baseline = live_greenlets()
    fds = open_fds()
    clients = []
    for _ in range(clients_count):
        client = RawClient(server.address)
        client.open("GET", "/sleep")
        assert next(client.events()).data == "hello"
        clients.append(client)
    assert all_started.wait(5)
    assert len(server.connections) == clients_count
    # One greenlet per open stream, the callback's: the connection's greenlet has ended and
    # the socket is watched by the hub.
    assert len(live_greenlets() - baseline) == clients_count
    closed_at = []
    for client in clients:
        closed_at.append(time.monotonic())
        client.close()
    wait_until(lambda: all("finally" in r for r in records), 2, "every callback's finally")
    wait_until(lambda: not server.connections, 2, "the connections to be released")
    latencies = [r["finally"] - t for r, t in zip(records, closed_at, strict=True)]
    hook_latencies = [r["on_close"] - t for r, t in zip(records, closed_at, strict=True)]
    print(
        f"\ndisconnect: {clients_count} clients, callback finally max {max(latencies) * 1000:.2f} ms, on_close max {max(hook_latencies) * 1000:.2f} ms"
    )
    assert max(latencies) < 0.1 and max(hook_latencies) < 0.1
    assert all(r["exit"] and r["hooks"] == 1 for r in records)
    for record in records:
        with pytest.raises(ConnectionLost):
            record["writer"].send_event("late")
    wait_until(lambda: live_greenlets() <= baseline, 2, lambda: live_greenlets() - baseline)
    wait_until(lambda: open_fds() <= fds, 2, "every socket to close, on both ends")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_streams_count_against_the_connection_limit(serve_app: Any) -> None:
    server = serve_app(counter_app(interval=0.05), sse_heartbeat=0, max_connections=2)
    streams = []
    for _ in range(2):
        client = RawClient(server.address)
        client.open("GET", "/events")
        streams.append(client)
    refused = RawClient(server.address)
    assert refused.open("GET", "/ping").status_code == 503
    refused.close()
    streams.pop().close()
    wait_until(lambda: len(server.connections) == 1, 2, "a slot to free up")
    admitted = RawClient(server.address)
    assert admitted.get("/ping") == (200, b"pong")
    admitted.close()
    for client in streams:
        client.close()


# -- 12: slow readers -----------------------------------------------------------------------


def test_slow_reader_is_dropped_others_unaffected(serve_app: Any) -> None:
    app = counter_app(interval=0.01)
    outcome: dict[str, Any] = {}
    payload = "x" * 16384

    def flood(writer: SSEWriter) -> None:
        sent = 0
        try:
            while True:
                writer.send_event(payload)
                sent += len(payload)
                if sent > 256 * 1024 * 1024:  # pragma: no cover - the bound below failed
                    return
        except BackpressureDetected as exc:
            outcome["error"] = exc
            outcome["sent"] = sent
            outcome["at"] = time.monotonic()
            raise

    @app.get("/flood")
    def flood_handler(event: H3Event) -> None:
        event.start_sse()
        event.set_stream_callback(flood)

    # The heartbeat is short too: the watcher's heartbeat also finds the stream stuck.
    server = serve_app(app, sse_send_timeout=0.3, sse_heartbeat=0.05)
    healthy = RawClient(server.address)
    healthy.open("GET", "/events")
    healthy_events = healthy.events()
    next(healthy_events)
    slow = RawClient(server.address, rcvbuf=4096)
    slow.open("GET", "/flood")  # the head, then never read again
    start = time.monotonic()
    seen_during = 0
    while "error" not in outcome and time.monotonic() - start < 5:
        next(healthy_events)
        seen_during += 1
    assert isinstance(outcome.get("error"), BackpressureDetected)
    print(
        f"\nslow reader: dropped after {outcome['at'] - start:.2f} s with {outcome['sent'] // 1024} KiB accepted by the kernel; healthy stream got {seen_during} events meanwhile"
    )
    # What a stalled client costs is the kernel's socket buffers, not an unbounded queue.
    assert outcome["sent"] < 64 * 1024 * 1024
    assert seen_during >= 10
    wait_until(lambda: len(server.connections) == 1, 2, "the slow connection to close")
    healthy.close()
    slow.close()


# -- 13: shutdown ---------------------------------------------------------------------------


@pytest.mark.parametrize("final", ["default", "custom", "none"])
def test_shutdown_sends_final_event_and_closes(final: str) -> None:
    closed: list[int] = []
    app = counter_app(interval=0.5, closed=closed)
    options: dict[str, Any] = {}
    if final == "custom":
        options["sse_shutdown_event"] = encode_event("bye", event="goodbye", retry=100)
    elif final == "none":
        options["sse_shutdown_event"] = None
    server = Server(app, port=0, access_log=False, sse_heartbeat=0, **options)
    server.start()
    clients = []
    for _ in range(30):
        client = RawClient(server.address)
        client.open("GET", "/events")
        clients.append(client)
    streams = [client.events() for client in clients]
    for events in streams:
        assert next(events).data == "0"
    ended: list[list[Any]] = []

    def drain(events: Iterator[Any]) -> None:
        ended.append(list(events))

    drains = [gevent.spawn(drain, events) for events in streams]
    start = time.monotonic()
    server.stop(timeout=3)
    took = time.monotonic() - start
    gevent.joinall(drains, timeout=3)
    print(f"\nshutdown ({final}): 30 streams closed in {took * 1000:.1f} ms")
    assert took < 1.0 and not server.connections
    assert len(ended) == 30 and len(closed) == 30  # each stream's hooks ran, once
    for rest in ended:
        if final == "default":
            assert rest[-1].event == "shutdown" and rest[-1].retry == 3000
            assert rest[-1].json() == {"reason": "server shutting down"}
        elif final == "custom":
            assert (rest[-1].event, rest[-1].data, rest[-1].retry) == ("goodbye", "bye", 100)
        else:
            assert all(e.event == "counter" for e in rest)
    for client in clients:
        assert client.h11.their_state is h11_done()  # a complete body, not a cut
        client.close()


def flood_app(sent: list[int] | None = None) -> H3:
    """``GET /flood``: a stream that writes 64 KiB events as fast as the socket takes them
    (each one counted in *sent*)."""
    app = H3()
    big = "w" * 65536
    counted = [] if sent is None else sent

    def flood(writer: SSEWriter) -> None:
        while True:
            writer.send_event(big)
            counted.append(1)

    @app.get("/flood")
    def flood_handler(event: H3Event) -> None:
        event.start_sse()
        event.set_stream_callback(flood)

    return app


def test_shutdown_event_to_a_stuck_client_times_out(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[int] = []
    server = Server(flood_app(sent), port=0, access_log=False, sse_heartbeat=0, sse_send_timeout=0.2)
    server.start()
    stuck = RawClient(server.address, rcvbuf=4096)
    stuck.open("GET", "/flood")
    wait_until(lambda: len(sent) >= 2, what="the flood to be under way")
    with caplog.at_level(logging.INFO, logger="h3green"):
        server.stop(timeout=3)
    # The final event could not be written within sse_send_timeout: the stream was cut then,
    # not by the shutdown timeout (which would have logged the cut).
    assert not server.connections
    assert "h3green stopped" in caplog.messages
    assert not any("cutting" in message for message in caplog.messages)
    stuck.close()


def test_pipelined_request_waits_for_the_stream_then_is_served(serve_app: Any) -> None:
    app = counter_app(interval=0.05, count=5)
    server = serve_app(app, sse_heartbeat=0)
    client = RawClient(server.address)
    client.open("GET", "/events")
    events = client.events()
    assert next(events).data == "0"
    # The next request arrives while the stream runs: it waits, buffered, for its turn.
    client.sock.sendall(b"GET /ping HTTP/1.1\r\nhost: x\r\n\r\n")
    assert [e.data for e in events][-1] == "done"
    client.h11.start_next_cycle()
    client.h11.send(h11_request("/ping"))
    client.h11.send(h11_end())
    assert client.next_event().status_code == 200
    assert b"".join(client.pieces()) == b"pong"
    client.close()


def test_oversized_pipelined_data_during_a_stream_drops_it(serve_app: Any) -> None:
    app = counter_app(interval=0.02)
    server = serve_app(app, sse_heartbeat=0, max_header_bytes=4096)
    client = RawClient(server.address)
    client.open("GET", "/events")
    client.sock.sendall(b"GET /" + b"a" * 8192)  # a head that never ends, larger than allowed
    wait_until(lambda: not server.connections, 2, "the connection to be dropped")
    client.close()


def h11_request(path: str) -> Any:
    import h11

    return h11.Request(method="GET", target=path, headers=[("host", "x")])


def h11_end() -> Any:
    import h11

    return h11.EndOfMessage()


def test_shutdown_not_held_up_by_a_client_that_does_not_read(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[int] = []
    server = Server(flood_app(sent), port=0, access_log=False, sse_heartbeat=0, sse_send_timeout=30)
    server.start()
    stuck = RawClient(server.address, rcvbuf=4096)
    stuck.open("GET", "/flood")
    wait_until(lambda: len(sent) >= 2, what="the flood to be under way")
    # Held up, stop() would wait for the 30 s send timeout; it cuts at its own 0.5 s.
    with caplog.at_level(logging.INFO, logger="h3green"), gevent.Timeout(10):
        server.stop(timeout=0.5)
    wait_until(lambda: not server.connections, 2, "the cut connection to close")
    assert "h3green stopped" in caplog.messages
    stuck.close()


# -- a real SSE client library --------------------------------------------------------------


def test_httpx_sse_reads_a_live_stream(serve_app: Any) -> None:
    server = serve_app(counter_app(interval=0.001, count=25))
    host, port = server.address
    url = f"http://{host}:{port}/events"

    def client() -> list[tuple[str, str, str]]:
        with httpx.Client(timeout=5) as http, httpx_sse.connect_sse(http, "GET", url) as source:
            assert source.response.headers["content-type"] == "text/event-stream; charset=utf-8"
            return [(e.event, e.data, e.id) for e in source.iter_sse()]

    events = in_thread(client)
    assert events[:25] == [("counter", str(n), str(n)) for n in range(25)]
    assert events[25] == ("done", "done", "24")  # the last id sticks, as the spec says
    wait_until(lambda: not server.connections, 2, "the connection to close")


def test_events_per_second_on_one_stream(serve_app: Any) -> None:
    count = 20_000
    app = H3()

    def burst(writer: SSEWriter) -> None:
        for n in range(count):
            writer.send_event("x" * 32, id=str(n))

    @app.get("/burst")
    def handler(event: H3Event) -> None:
        event.start_sse()
        event.set_stream_callback(burst)

    server = serve_app(app, sse_heartbeat=0)
    client = RawClient(server.address)
    start = time.perf_counter()
    client.open("GET", "/burst")
    received = count_events(client.pieces())
    took = time.perf_counter() - start
    client.close()
    print(f"\none stream: {count} events in {took:.2f} s = {count / took:,.0f} events/s")
    assert received == count
