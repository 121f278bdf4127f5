"""h3green.sse.Channel: fan-out, bounded subscriber queues, ids and Last-Event-ID history."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import pytest
from helpers import RawClient, live_greenlets, switches_during, wait_until

from h3green import H3, BackpressureDetected, Channel, H3Event, Headers, SSEWriter
from h3green import channel as channel_module
from h3green.sse import MemoryHistory, encode_event
from h3green.testing import TestClient


class Transport:
    """Collects what a writer sends; ``gate`` (when set) makes sends block like a full socket."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.finished = False
        self.aborted = False
        self.gate: gevent.event.Event | None = None

    def send(self, payload: bytes) -> None:
        if self.gate is not None:
            self.gate.wait()
            if self.aborted:
                from h3green import ConnectionLost

                raise ConnectionLost("cut")
        self.sent.append(payload)

    def finish(self) -> None:
        self.finished = True

    def abort(self) -> None:
        self.aborted = True
        if self.gate is not None:
            self.gate.set()


def writer_for(last_event_id: str | None = None) -> tuple[SSEWriter, Transport]:
    headers = Headers({"last-event-id": last_event_id} if last_event_id is not None else None)
    transport = Transport()
    return SSEWriter(transport, H3Event("GET", "/", headers)), transport


def listen_quietly(channel: Channel, writer: SSEWriter, **kwargs: Any) -> BackpressureDetected | None:
    try:
        channel.listen(writer, **kwargs)
    except BackpressureDetected as exc:
        return exc
    return None


def listening(channel: Channel, writer: SSEWriter, **kwargs: Any) -> gevent.Greenlet:
    greenlet = gevent.spawn(listen_quietly, channel, writer, **kwargs)
    gevent.sleep(0)
    return greenlet


# -- MemoryHistory --------------------------------------------------------------------------


def test_memory_history_bounds_and_lookups() -> None:
    history = MemoryHistory(3)
    for seq in range(1, 6):
        history.append(seq, str(seq), f"e{seq}".encode())
    assert len(history) == 3
    assert history.since("3") == [b"e4", b"e5"]
    assert history.since("5") == []
    # Evicted, but a number: everything still kept was missed.
    assert history.since("1") == [b"e3", b"e4", b"e5"]
    # From before a restart (ahead of us) or not ours at all: nothing to replay.
    assert history.since("99") == []
    assert history.since("abc") == []
    assert history.recent(2) == [b"e4", b"e5"]
    assert history.recent(10) == [b"e3", b"e4", b"e5"]
    assert history.recent(0) == []


def test_memory_history_named_and_repeated_ids() -> None:
    history = MemoryHistory(2)
    history.append(1, "a", b"1")
    history.append(2, None, b"2")
    history.append(3, "a", b"3")
    assert history.since("a") == []  # the latest "a"
    history.append(4, "b", b"4")  # evicts seq 2 (no id)
    history.append(5, "c", b"5")  # evicts seq 3, the "a" mapping goes with it
    assert history.since("a") == []
    assert history.since("b") == [b"5"]
    empty = MemoryHistory(0)
    empty.append(1, "1", b"x")
    assert len(empty) == 0
    with pytest.raises(ValueError):
        MemoryHistory(-1)


# -- Channel --------------------------------------------------------------------------------


def test_publish_encodes_once_and_fans_out(monkeypatch: pytest.MonkeyPatch) -> None:
    channel = Channel()
    pairs = [writer_for() for _ in range(50)]
    greenlets = [listening(channel, writer) for writer, _ in pairs]
    assert len(channel) == 50
    calls: list[int] = []
    real: Callable[..., bytes] = vars(channel_module)["encode_event"]

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(channel_module, "encode_event", counting)
    assert channel.publish({"n": 1}, event="tick") == "1"
    assert channel.publish("two") == "2"
    assert channel.publish("named", id="x") == "x"
    assert len(calls) == 3
    gevent.sleep(0)
    for _, transport in pairs:
        # What piled up while the listener waited for its turn goes out in one write.
        assert transport.sent == [
            b'event: tick\nid: 1\ndata: {"n":1}\n\nid: 2\ndata: two\n\nid: x\ndata: named\n\n'
        ]
    channel.publish("alone")
    gevent.sleep(0)
    # One event waiting: the very bytes object publish encoded, shared by everyone.
    assert len({id(t.sent[1]) for _, t in pairs}) == 1
    for writer, _ in pairs:
        writer.close()
    gevent.joinall(greenlets, timeout=2)
    assert all(g.dead and g.successful() and g.value is None for g in greenlets)
    assert len(channel) == 0 and "subscribers=0" in repr(channel)


def test_ids_are_monotonic_or_off() -> None:
    channel = Channel(auto_id=False)
    assert channel.publish("x") is None
    assert channel.publish("y", id="7") == "7"
    numbered = Channel()
    assert [numbered.publish(i) for i in range(3)] == ["1", "2", "3"]


def test_invalid_event_raises_and_changes_nothing() -> None:
    channel = Channel()
    with pytest.raises(ValueError):
        channel.publish("x", event="a\nb")
    assert channel.publish("ok") == "1"
    with pytest.raises(ValueError):
        Channel(max_queue_events=0)


def test_slow_subscriber_is_dropped_without_waiting() -> None:
    channel = Channel(max_queue_events=5)
    fast_writer, fast = writer_for()
    slow_writer, slow = writer_for()
    slow.gate = gevent.event.Event()  # its socket is full: every send blocks
    closed: list[int] = []
    slow_writer.on_close(lambda: closed.append(1))
    fast_greenlet = listening(channel, fast_writer)
    slow_greenlet = listening(channel, slow_writer)
    for n in range(20):
        # Never waited for the blocked subscriber: a wait would switch to the hub.
        assert switches_during(lambda: channel.publish(n)) == 0  # noqa: B023 - called at once
        gevent.sleep(0)  # the fast listener keeps up
    assert len(channel) == 1 and slow.aborted and not slow_writer.is_active
    slow_greenlet.join(timeout=2)
    assert isinstance(slow_greenlet.value, BackpressureDetected)
    # on_close runs in the subscriber's own greenlet (when it closes), never in publish.
    assert closed == []
    slow_writer.close()
    assert closed == [1]
    gevent.sleep(0)
    assert len(fast.sent) == 20
    fast_writer.close()
    fast_greenlet.join(timeout=2)


def test_listeners_that_did_not_run_in_time_are_dropped_together() -> None:
    channel = Channel(max_queue_events=3)
    listeners = [writer_for() for _ in range(3)]
    greenlets = [listening(channel, writer) for writer, _ in listeners]
    for n in range(5):  # no switch: nobody gets to write, every queue overflows
        channel.publish(n)
    assert len(channel) == 0
    gevent.joinall(greenlets, timeout=2)
    assert all(isinstance(g.value, BackpressureDetected) for g in greenlets)
    assert all(t.aborted and t.sent == [] for _, t in listeners)


def test_byte_bound_drops_too() -> None:
    channel = Channel(max_queue_events=1000, max_queue_bytes=1000)
    writer, transport = writer_for()
    transport.gate = gevent.event.Event()
    greenlet = listening(channel, writer)
    channel.publish("a" * 400)
    gevent.sleep(0)  # the listener takes it and blocks sending it
    channel.publish("b" * 400)
    channel.publish("c" * 400)
    assert len(channel) == 1
    channel.publish("d" * 400)  # 1,200 bytes would be queued: dropped
    assert len(channel) == 0
    greenlet.join(timeout=2)
    assert isinstance(greenlet.value, BackpressureDetected)


def test_last_event_id_replays_missed_then_live_without_duplicates() -> None:
    channel = Channel(history=50)
    for n in range(1, 6):
        channel.publish(f"m{n}")
    writer, transport = writer_for(last_event_id="2")
    greenlet = listening(channel, writer)
    channel.publish("m6")
    gevent.sleep(0)
    assert b"".join(transport.sent) == b"".join(encode_event(f"m{n}", id=str(n)) for n in range(3, 7))
    writer.close()
    greenlet.join(timeout=2)


def test_replay_recent_and_store_false() -> None:
    channel = Channel(history=50)
    for n in range(1, 16):
        channel.publish(f"m{n}")
    channel.publish("presence", event="user-event", store=False)
    writer, transport = writer_for()
    greenlet = listening(channel, writer, replay=10)
    assert b"".join(transport.sent) == b"".join(encode_event(f"m{n}", id=str(n)) for n in range(6, 16))
    writer.close()
    greenlet.join(timeout=2)
    # A client that saw the unstored event (id 16) resumes after it.
    resumed, resumed_transport = writer_for(last_event_id="16")
    greenlet = listening(channel, resumed)
    channel.publish("m17")
    gevent.sleep(0)
    assert b"".join(resumed_transport.sent) == encode_event("m17", id="17")
    resumed.close()
    greenlet.join(timeout=2)


def test_custom_store_behind_the_history_interface() -> None:
    class ListStore:
        def __init__(self) -> None:
            self.entries: list[tuple[int, str | None, bytes]] = []

        def append(self, seq: int, id: str | None, payload: bytes) -> None:
            self.entries.append((seq, id, payload))

        def since(self, last_id: str) -> list[bytes]:
            return [p for s, _, p in self.entries if s > int(last_id)]

        def recent(self, count: int) -> list[bytes]:
            return [p for _, _, p in self.entries[-count:]]

    store = ListStore()
    channel = Channel(store=store)
    channel.publish("a")
    channel.publish("b")
    assert [seq for seq, _, _ in store.entries] == [1, 2]
    writer, transport = writer_for(last_event_id="1")
    greenlet = listening(channel, writer)
    assert b"".join(transport.sent) == encode_event("b", id="2")
    writer.close()
    greenlet.join(timeout=2)


def test_listen_on_an_ended_writer_returns() -> None:
    channel = Channel()
    writer, _ = writer_for()
    writer.close()
    channel.listen(writer)
    assert len(channel) == 0


def test_publish_to_10k_subscribers_only_enqueues() -> None:
    subscribers = 10_000
    channel = Channel()
    pairs = [writer_for() for _ in range(subscribers)]
    greenlets = [gevent.spawn(channel.listen, writer) for writer, _ in pairs]
    gevent.sleep(0)
    assert len(channel) == subscribers
    timings = []
    for n in range(5):
        start = time.perf_counter()
        # Encoded once, queued to each: no wait on any subscriber (a wait is a switch).
        assert switches_during(lambda: channel.publish({"n": n}, event="tick")) == 0  # noqa: B023 - called at once
        timings.append(time.perf_counter() - start)
        gevent.sleep(0)  # let every listener write it
    best = min(timings)
    print(  # for the record; the speed itself is bench/'s business
        f"\nchannel publish to {subscribers} subscribers: best {best * 1000:.2f} ms ({best / subscribers * 1e9:.0f} ns per subscriber)"
    )
    wait_until(lambda: all(len(t.sent) == 5 for _, t in pairs), 5, "every subscriber's events")
    for writer, _ in pairs:
        writer.close()
    gevent.joinall(greenlets, timeout=5)
    assert len(channel) == 0


# -- through the server ---------------------------------------------------------------------


def channel_app(channel: Channel) -> H3:
    app = H3()

    @app.get("/live")
    def live(event: H3Event) -> None:
        event.start_sse()
        event.set_stream_callback(channel.listen)

    return app


def test_channel_through_test_client_with_resumption() -> None:
    channel = Channel()
    client = TestClient(channel_app(channel), sse_heartbeat=0)
    with client.stream("GET", "/live") as first, client.stream("GET", "/live") as second:
        wait_until(lambda: len(channel) == 2, 2, "two subscribers")
        for n in range(3):
            channel.publish(f"e{n}", event="news")
        one = first.iter_events()
        two = second.iter_events()
        assert [next(one).data for _ in range(3)] == ["e0", "e1", "e2"]
        assert [next(two).id for _ in range(3)] == ["1", "2", "3"]
    wait_until(lambda: len(channel) == 0, 2, "the subscribers to leave")
    channel.publish("e3", event="news")
    with client.stream("GET", "/live", headers={"last-event-id": "2"}) as resumed:
        events = resumed.iter_events()
        assert [(e.id, e.data) for e in (next(events), next(events))] == [("3", "e2"), ("4", "e3")]
        wait_until(lambda: len(channel) == 1, 2, "the resumed subscriber")
        channel.publish("e4")
        assert next(events).data == "e4"


@pytest.mark.live
def test_slow_socket_subscriber_dropped_over_real_sockets(serve_app: Any) -> None:
    channel = Channel(max_queue_events=8)
    server = serve_app(channel_app(channel), sse_heartbeat=0, sse_send_timeout=5)
    baseline = live_greenlets()
    fast = RawClient(server.address)
    fast.open("GET", "/live")
    slow = RawClient(server.address, rcvbuf=4096)
    slow.open("GET", "/live")
    wait_until(lambda: len(channel) == 2, 2, "two subscribers")
    received: list[str] = []

    def read_fast() -> None:
        for event in fast.events():
            received.append(event.data)
            if len(received) == 200:
                return

    reader = gevent.spawn(read_fast)
    payload = "z" * 32768
    worst = 0.0
    for n in range(200):
        start = time.perf_counter()
        channel.publish(f"{n}:{payload}")
        worst = max(worst, time.perf_counter() - start)
        gevent.sleep(0.001)
    reader.join(timeout=5)
    assert len(received) == 200 and [r.split(":")[0] for r in received] == [str(n) for n in range(200)]
    assert len(channel) == 1  # the slow one was dropped
    wait_until(lambda: len(server.connections) == 1, 2, "the slow connection to close")
    print(f"\nchannel over sockets: slow subscriber dropped, worst publish {worst * 1000:.2f} ms")
    assert worst < 0.05
    fast.close()
    slow.close()
    wait_until(lambda: not server.connections, 2, "every connection to close")
    wait_until(lambda: live_greenlets() <= baseline, 2, lambda: live_greenlets() - baseline)


def test_memory_backend_ids_off_repr_and_misuse() -> None:
    from h3green.memory import MemoryBackend

    backend = MemoryBackend()
    channel = Channel("quiet", backend=backend, auto_id=False)
    assert channel.publish("x") is None and channel.publish("y", id="7") == "7"
    assert repr(backend) == "<MemoryBackend channels=1>" and "'quiet'" in repr(channel)
    with pytest.raises(ValueError, match="needs a name"):
        Channel(backend=backend)
    with pytest.raises(ValueError, match="store="):
        Channel("x", backend=backend, store=MemoryHistory())
