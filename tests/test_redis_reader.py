"""``RedisBackend``'s reader and replays at their edges: markers where Redis lost entries,
paging, two backends (two processes' worth) on one Redis, failures mid-join."""

from __future__ import annotations

from typing import Any

import gevent
import pytest
import redis
from gevent import socket as gsocket
from helpers import wait_until
from redis_helpers import RedisServer, blocks
from test_channel import Transport, listening, writer_for

from h3green import Channel, ChannelUnavailable
from h3green.channel import MemoryHistory
from h3green.redis import RedisBackend

pytestmark = pytest.mark.live

GAP = {"event": "gap", "data": '{"reason":"lost"}'}


def received(transport: Transport) -> list[dict[str, str]]:
    return blocks(b"".join(transport.sent))


def wait_for(transport: Transport, count: int) -> list[dict[str, str]]:
    wait_until(lambda: len(received(transport)) >= count, 5, f"{count} events")
    return received(transport)


@pytest.fixture
def raw(redis_server: RedisServer, cooperative_redis: None) -> Any:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def test_markers_become_one_gap_notice_live_and_in_replays(redis_backend: RedisBackend, raw: Any) -> None:
    channel = Channel("room", backend=redis_backend)
    writer, transport = writer_for()
    greenlet = listening(channel, writer)
    wait_until(lambda: len(channel) == 1, 5, "the subscriber")
    first = channel.publish("a")
    wait_for(transport, 1)
    raw.xadd("h3green:room", {"g": ""})
    raw.xadd("h3green:room", {"g": ""})
    wait_until(lambda: len(received(transport)) == 2, 5, "the gap notice")
    last = channel.publish("b")
    assert wait_for(transport, 3) == [{"id": first, "data": "a"}, GAP, {"id": last, "data": "b"}]
    resumed, resumed_transport = writer_for(last_event_id=first)
    other = listening(channel, resumed)
    assert wait_for(resumed_transport, 2) == [GAP, {"id": last, "data": "b"}]
    for w in (writer, resumed):
        w.close()
    gevent.joinall([greenlet, other], timeout=5)


def test_long_replays_are_read_in_pages(redis_backend: RedisBackend) -> None:
    channel = Channel("room", backend=redis_backend, history=2000)
    ids = [channel.publish(f"m{n}") for n in range(1200)]
    for n in range(40):
        channel.publish(f"p{n}", store=False)
    writer, transport = writer_for(last_event_id=ids[0])
    greenlet = listening(channel, writer)
    assert [e["data"] for e in wait_for(transport, 1199)] == [f"m{n}" for n in range(1, 1200)]
    recent, recent_transport = writer_for()
    other = listening(channel, recent, replay=3)
    assert wait_for(recent_transport, 3) == [{"id": ids[n], "data": f"m{n}"} for n in range(1197, 1200)]
    for w in (writer, recent):
        w.close()
    gevent.joinall([greenlet, other], timeout=5)


def test_two_channel_objects_on_one_key_and_leaving(redis_backend: RedisBackend) -> None:
    one, two = Channel("room", backend=redis_backend), Channel("room", backend=redis_backend)
    w1, t1 = writer_for()
    w2, t2 = writer_for()
    greenlets = [listening(one, w1), listening(two, w2)]
    wait_until(lambda: redis_backend.connected and len(one) == len(two) == 1, 5, "both")
    event_id = one.publish("both")
    assert wait_for(t1, 1) == wait_for(t2, 1) == [{"id": event_id, "data": "both"}]
    w1.close()
    greenlets[0].join(5)
    assert "keys=1" in repr(redis_backend)
    redis_backend.leave(Channel("elsewhere", backend=redis_backend))  # not listening: nothing to do
    w2.close()
    greenlets[1].join(5)
    assert "keys=0" in repr(redis_backend)


def test_a_client_ahead_of_this_process_waits_for_its_reader(
    redis_server: RedisServer, cooperative_redis: None
) -> None:
    """A client comes back to a process whose reader has not yet delivered the client's
    last event: it must get neither that event again nor anything before it."""
    with RedisBackend(redis_server.url) as here, RedisBackend(redis_server.url) as elsewhere:
        channel = Channel("room", backend=here)
        writer, transport = writer_for()
        greenlet = listening(channel, writer)
        wait_until(lambda: here.connected and len(channel) == 1, 5, "the reader")
        assert here._greenlet is not None
        here._greenlet.kill()  # this process's reader stalls
        seen = Channel("room", backend=elsewhere).publish("seen elsewhere")
        back, back_transport = writer_for(last_event_id=seen)
        other = listening(channel, back)
        gevent.sleep(0.05)
        assert len(channel) == 1  # still waiting for the reader
        here._start_reader()
        wait_until(lambda: len(channel) == 2, 5, "the client to join")
        after = channel.publish("after")
        assert wait_for(back_transport, 1) == [{"id": after, "data": "after"}]
        assert wait_for(transport, 2)[-1] == {"id": after, "data": "after"}
        for w in (writer, back):
            w.close()
        gevent.joinall([greenlet, other], timeout=5)


def test_restart_seen_by_two_processes_gives_each_one_notice(
    redis_server: RedisServer, cooperative_redis: None
) -> None:
    options: dict[str, Any] = {"timeout": 0.5, "reconnect_min": 0.01, "reconnect_max": 0.05}
    with RedisBackend(redis_server.url, **options) as one, RedisBackend(redis_server.url, **options) as two:
        channels = [Channel("room", backend=one), Channel("room", backend=two)]
        pairs = [writer_for() for _ in channels]
        greenlets = [listening(c, w) for c, (w, _) in zip(channels, pairs, strict=True)]
        wait_until(lambda: all(len(c) == 1 for c in channels), 5, "both subscribers")
        before = channels[0].publish("before")
        for _, transport in pairs:
            wait_for(transport, 1)
        redis_server.kill()
        wait_until(lambda: not one.connected and not two.connected, 5, "both to notice")
        # A listener joining while Redis is down waits for it, stream open.
        late_writer, late = writer_for()
        greenlets.append(listening(channels[1], late_writer, replay=5))
        ahead_writer, ahead = writer_for(last_event_id="99999999999999-0")
        greenlets.append(listening(channels[0], ahead_writer))
        gone_writer, _ = writer_for()
        gone = listening(channels[0], gone_writer, replay=5)
        gone_writer.close()  # leaves before Redis is back
        gone.join(5)
        assert gone.dead
        redis_server.start()
        wait_until(lambda: one.connected and two.connected, 5, "both to reconnect")
        wait_until(lambda: len(channels[1]) == 2, 5, "the late listener")
        after = channels[1].publish("after")
        for _, transport in pairs:
            assert wait_for(transport, 3) == [
                {"id": before, "data": "before"},
                GAP,
                {"id": after, "data": "after"},
            ]
        assert wait_for(late, 1)[-1] == {"id": after, "data": "after"}
        # Its replay and the reader both saw the gap; no event came twice or out of order.
        got = wait_for(ahead, 2)
        assert got[0] == {"event": "gap", "data": '{"reason":"unknown"}'}
        assert [e for e in got if "id" in e] == [{"id": after, "data": "after"}] == got[-1:]
        for w in [w for w, _ in pairs] + [late_writer, ahead_writer]:
            w.close()
        gevent.joinall(greenlets, timeout=5)


def test_reader_parks_without_keys_and_survives_a_bug(
    redis_server: RedisServer,
    cooperative_redis: None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with RedisBackend(redis_server.url, block=0.05, reconnect_min=0.01) as backend:
        channel = Channel("room", backend=backend)
        writer, _ = writer_for()
        greenlet = listening(channel, writer)
        wait_until(lambda: backend.connected, 5, "the reader")
        writer.close()
        greenlet.join(5)
        wait_until(lambda: not backend._has_keys.is_set(), 5, "the reader to park")
        calls = []
        real = backend._reader.xread

        def broken(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("bug")
            return real(*args, **kwargs)

        monkeypatch.setattr(backend._reader, "xread", broken)
        writer, transport = writer_for()
        greenlet = listening(channel, writer)
        wait_until(lambda: len(calls) > 1 and len(channel) == 1, 5, "the reader to recover")
        event_id = channel.publish("still here")
        assert wait_for(transport, 1) == [{"id": event_id, "data": "still here"}]
        writer.close()
        greenlet.join(5)
        backend._deliver("h3green:nobody", [(b"1-0", {b"d": b"data: x\n\n"})])  # a key left meanwhile
    assert "Redis reader at" in caplog.text and "RuntimeError: bug" in caplog.text


def test_a_silent_redis_times_publish_out_and_joins_stay_cancellable(cooperative_redis: None) -> None:
    silent = gsocket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts (the kernel does), never answers
    port = silent.getsockname()[1]
    try:
        with RedisBackend(f"redis://127.0.0.1:{port}/0", timeout=0.2) as backend:
            channel = Channel("room", backend=backend)
            with gevent.Timeout(10), pytest.raises(ChannelUnavailable):
                channel.publish("x")
            with RedisBackend(f"redis://127.0.0.1:{port}/0", timeout=5) as patient:
                with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):  # someone else's timeout
                    patient.publish(channel, "x", event=None, id=None, retry=None, store=True)
            writer, _ = writer_for()
            greenlet = listening(channel, writer)  # waits for the reader to position the key
            writer.close()
            greenlet.join(5)
            assert greenlet.dead and len(channel) == 0
    finally:
        silent.close()


def test_memory_history_lost() -> None:
    history = MemoryHistory(3)
    for seq in range(1, 6):
        history.append(seq, str(seq), b"x")
    assert history.lost("5", 5) is None and history.lost("4", 5) is None
    assert history.lost("1", 5) == "expired" and history.lost("2", 5) is None
    assert history.lost("9", 5) == "unknown" and history.lost("x", 5) == "unknown"
    assert MemoryHistory(0).lost("1", 2) == "expired"
    assert MemoryHistory(5).lost("1", 2) is None  # all since were store=False


def test_interrupt_gives_up_quietly(redis_backend: RedisBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def not_blocked_yet(client_id: int) -> bool:
        calls.append(client_id)
        return False

    monkeypatch.setattr(redis_backend._pooled, "client_unblock", not_blocked_yet)
    redis_backend._blocked, redis_backend._reader_id = True, 42
    redis_backend._interrupt()  # tries a bounded number of times; the block timeout is the net
    assert calls == [42] * 20

    def down(client_id: int) -> bool:
        raise redis.ConnectionError("down")

    monkeypatch.setattr(redis_backend._pooled, "client_unblock", down)
    redis_backend._interrupt()
    redis_backend._blocked = False


def test_resync_when_someone_else_continued_the_stream(
    redis_backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = Channel("room", backend=redis_backend)
    writer, transport = writer_for()
    greenlet = listening(channel, writer)
    wait_until(lambda: len(channel) == 1, 5, "the subscriber")
    assert redis_backend._greenlet is not None
    redis_backend._greenlet.kill()  # the reader's connection is ours now
    redis_backend._connected = False  # as while the reader resyncs after a reconnect
    state = redis_backend._keys["h3green:room"]
    state.last_id = b"99999999999999-5"  # Redis no longer has it, and its stream ends below

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise redis.ResponseError(
            "The ID specified in XADD is equal or smaller than the target stream top item"
        )

    monkeypatch.setattr(redis_backend._reader, "xadd", refused)
    redis_backend._resync()
    redis_backend._resync()  # one notice, not two
    assert wait_for(transport, 1) == [GAP]
    writer.close()
    greenlet.join(5)


def test_a_connection_remade_between_reads_still_resyncs(
    redis_server: RedisServer, cooperative_redis: None
) -> None:
    # Redis restarts while the reader pauses between reads: redis-py would quietly remake
    # the connection on the next command; the reader must notice and send the gap notice.
    with RedisBackend(redis_server.url, coalesce=0.5, reconnect_min=0.01) as backend:
        channel = Channel("room", backend=backend)
        writer, transport = writer_for()
        greenlet = listening(channel, writer)
        wait_until(lambda: len(channel) == 1, 5, "the subscriber")
        first = channel.publish("a")
        wait_for(transport, 1)  # the reader now pauses for 0.5 s
        redis_server.kill()
        redis_server.start()
        wait_until(lambda: not backend.connected, 5, "the reader to notice")
        wait_until(lambda: backend.connected, 5, "the reader to resync")
        last = channel.publish("b")
        assert wait_for(transport, 3) == [{"id": first, "data": "a"}, GAP, {"id": last, "data": "b"}]
        writer.close()
        greenlet.join(5)


def test_a_listener_still_joining_keeps_the_key_read(redis_backend: RedisBackend) -> None:
    # Two listeners wait for the reader to position a new key; the first one's client
    # leaves meanwhile. The key must stay, or the second would wait for ever.
    warm = Channel("warm", backend=redis_backend)
    writer0, _ = writer_for()
    greenlet0 = listening(warm, writer0)
    wait_until(lambda: len(warm) == 1, 5, "the reader to run")
    assert redis_backend._greenlet is not None
    redis_backend._greenlet.kill()  # the reader stalls: new keys wait to be positioned
    channel = Channel("room", backend=redis_backend)
    writer1, _ = writer_for()
    writer2, transport2 = writer_for()
    greenlet1, greenlet2 = listening(channel, writer1), listening(channel, writer2)
    writer1.close()
    greenlet1.join(5)
    assert greenlet1.dead and "keys=2" in repr(redis_backend)
    redis_backend._start_reader()
    wait_until(lambda: len(channel) == 1, 5, "the second listener to subscribe")
    live = channel.publish("live")
    assert wait_for(transport2, 1) == [{"id": live, "data": "live"}]
    for writer in (writer0, writer2):
        writer.close()
    gevent.joinall([greenlet0, greenlet2], timeout=5)
    assert "keys=0" in repr(redis_backend)


def test_a_reader_that_fell_behind_the_trimming_sends_a_gap_notice(
    redis_server: RedisServer, cooperative_redis: None
) -> None:
    # The reader pauses half a second after each read (as a busy process would be late),
    # and the stream is trimmed past its position meanwhile, on the same connection.
    with RedisBackend(redis_server.url, coalesce=0.5) as backend:
        channel = Channel("room", backend=backend, history=5)
        writer, transport = writer_for()
        greenlet = listening(channel, writer)
        wait_until(lambda: len(channel) == 1, 5, "the subscriber")
        first = channel.publish("m0")
        wait_for(transport, 1)
        ids = [channel.publish(f"m{n}") for n in range(1, 40)]
        got = wait_for(transport, 7)
        assert got[0] == {"id": first, "data": "m0"} and got[1] == GAP
        rest = got[2:]
        assert rest == [{"id": ids[n - 1], "data": f"m{n}"} for n in range(40 - len(rest), 40)]
        # A read smaller than the history does not ask: no notice without a loss.
        last = channel.publish("m40")
        assert wait_for(transport, len(got) + 1)[-1] == {"id": last, "data": "m40"}
        writer.close()
        greenlet.join(5)


def test_a_big_first_read_of_a_new_stream_is_no_gap(redis_backend: RedisBackend, raw: Any) -> None:
    channel = Channel("fresh", backend=redis_backend, history=5)
    writer, transport = writer_for()
    greenlet = listening(channel, writer)
    wait_until(lambda: len(channel) == 1, 5, "the subscriber")  # positioned at 0-0: no stream yet
    with raw.pipeline(transaction=True) as pipe:  # ten entries land at once, in one read
        for n in range(10):
            pipe.xadd("h3green:fresh", {"d": f"data: m{n}\n\n".encode()})
        ids = [i.decode() for i in pipe.execute()]
    assert wait_for(transport, 10) == [{"id": ids[n], "data": f"m{n}"} for n in range(10)]
    writer.close()
    greenlet.join(5)
