"""One behavioural suite, every backend: each test runs on the in-process channel (its own
log, and ``MemoryBackend``'s shared by name) and on ``RedisBackend`` against a real
``redis-server`` (tests/redis_helpers.py).

What a listener sees must not depend on the backend: the same events in the same order
with the same ids for everyone, exact ``Last-Event-ID`` resumption, the last *replay*
events, ``store=False`` live only, a gap notice before what remains when the id is too
old or unknown, and slow subscribers dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import pytest
from helpers import wait_until
from redis_helpers import blocks
from test_channel import Transport, channel_app, listening, writer_for

from h3green import BackpressureDetected, Channel
from h3green.memory import MemoryBackend
from h3green.redis import parse_id
from h3green.testing import TestClient

MakeChannel = Callable[..., Channel]


@pytest.fixture(params=["memory", "memory-backend", pytest.param("redis", marks=pytest.mark.live)])
def make_channel(request: pytest.FixtureRequest) -> MakeChannel:
    if request.param == "memory":
        return lambda name="room", **options: Channel(name, **options)
    backend = (
        MemoryBackend() if request.param == "memory-backend" else request.getfixturevalue("redis_backend")
    )
    return lambda name="room", **options: Channel(name, backend=backend, **options)


def order(event_id: str) -> tuple[int, int]:
    """Ids sort by what they count: a number in memory, an entry id in Redis."""
    return (int(event_id), 0) if event_id.isdigit() else parse_id(event_id)  # type: ignore[return-value]


def received(transport: Transport) -> list[dict[str, str]]:
    return blocks(b"".join(transport.sent))


def wait_for(transport: Transport, count: int) -> list[dict[str, str]]:
    wait_until(lambda: len(received(transport)) >= count, 5, f"{count} events")
    return received(transport)


def test_everyone_gets_the_same_events_in_order_with_the_same_ids(make_channel: MakeChannel) -> None:
    channel = make_channel()
    pairs = [writer_for() for _ in range(20)]
    greenlets = [listening(channel, writer) for writer, _ in pairs]
    wait_until(lambda: len(channel) == 20, 5, "20 subscribers")
    published = []
    for n in range(30):
        event = "even" if n % 2 == 0 else None
        published.append({"id": channel.publish({"n": n}, event=event), "data": f'{{"n":{n}}}'})
        if event:
            published[-1]["event"] = event
    ids = [p["id"] for p in published]
    assert ids == sorted(ids, key=order) and len(set(ids)) == 30  # type: ignore[arg-type]
    for _, transport in pairs:
        got = wait_for(transport, 30)
        assert [dict(sorted(e.items())) for e in got] == [dict(sorted(p.items())) for p in published]
    for writer, _ in pairs:
        writer.close()
    gevent.joinall(greenlets, timeout=5)
    assert all(g.dead and g.value is None for g in greenlets)
    wait_until(lambda: len(channel) == 0, 2, "the subscribers to leave")


def test_last_event_id_gets_exactly_what_was_missed_then_live(make_channel: MakeChannel) -> None:
    channel = make_channel(history=50)
    ids = [channel.publish(f"m{n}") for n in range(6)]
    writer, transport = writer_for(last_event_id=ids[1])
    greenlet = listening(channel, writer)
    wait_until(lambda: len(channel) == 1, 5, "the subscriber")
    ids.append(channel.publish("m6"))
    got = wait_for(transport, 5)
    assert got == [{"id": ids[n], "data": f"m{n}"} for n in range(2, 7)]
    ids.append(channel.publish("m7"))
    assert wait_for(transport, 6)[-1] == {"id": ids[7], "data": "m7"}
    writer.close()
    greenlet.join(timeout=5)


def test_replay_recent_and_store_false(make_channel: MakeChannel) -> None:
    channel = make_channel(history=50)
    ids = [channel.publish(f"m{n}") for n in range(15)]
    live_writer, live = writer_for()
    live_greenlet = listening(channel, live_writer)
    wait_until(lambda: len(channel) == 1, 5, "the live subscriber")
    presence = channel.publish("ada joined", event="user-event", store=False)
    assert wait_for(live, 1) == [{"event": "user-event", "id": presence, "data": "ada joined"}]
    writer, transport = writer_for()
    greenlet = listening(channel, writer, replay=10)
    # The last ten stored events; the unstored one is never replayed.
    assert wait_for(transport, 10) == [{"id": ids[n], "data": f"m{n}"} for n in range(5, 15)]
    writer.close()
    greenlet.join(timeout=5)
    # A client whose last event was the unstored one resumes after it, with no gap.
    resumed, resumed_transport = writer_for(last_event_id=presence)
    greenlet = listening(channel, resumed)
    wait_until(lambda: len(channel) == 2, 5, "the resumed subscriber")
    after = channel.publish("m15")
    assert wait_for(resumed_transport, 1) == [{"id": after, "data": "m15"}]
    for w in (resumed, live_writer):
        w.close()
    gevent.joinall([greenlet, live_greenlet], timeout=5)


def test_an_id_older_than_the_history_gets_a_gap_notice_then_what_remains(make_channel: MakeChannel) -> None:
    channel = make_channel(history=5)
    ids = [channel.publish(f"m{n}") for n in range(40)]
    writer, transport = writer_for(last_event_id=ids[0])
    greenlet = listening(channel, writer)
    wait_until(lambda: len(received(transport)) > 5, 5, "the gap notice and the history")
    notice, *rest = received(transport)
    assert notice == {"event": "gap", "data": '{"reason":"expired"}'}
    # What remains is a suffix of what was published (Redis trims to *about* 5).
    assert 5 <= len(rest) < 39
    assert rest == [{"id": ids[n], "data": f"m{n}"} for n in range(40 - len(rest), 40)]
    writer.close()
    greenlet.join(timeout=5)


@pytest.mark.parametrize("last_event_id", ["nonsense", "999999999999999-0", "99999"])
def test_an_unknown_id_gets_a_gap_notice_then_the_history(
    make_channel: MakeChannel, last_event_id: str
) -> None:
    channel = make_channel(history=50, gap_event="reload")
    ids = [channel.publish(f"m{n}") for n in range(3)]
    writer, transport = writer_for(last_event_id=last_event_id)
    greenlet = listening(channel, writer)
    got = wait_for(transport, 4)
    assert got[0] == {"event": "reload", "data": '{"reason":"unknown"}'}
    assert got[1:] == [{"id": ids[n], "data": f"m{n}"} for n in range(3)]
    writer.close()
    greenlet.join(timeout=5)


def test_gap_notice_can_be_turned_off(make_channel: MakeChannel) -> None:
    channel = make_channel(history=50, gap_event=None)
    ids = [channel.publish(f"m{n}") for n in range(2)]
    writer, transport = writer_for(last_event_id="nonsense")
    greenlet = listening(channel, writer)
    assert wait_for(transport, 2) == [{"id": ids[n], "data": f"m{n}"} for n in range(2)]
    writer.close()
    greenlet.join(timeout=5)


def test_a_slow_subscriber_is_dropped_and_the_others_keep_up(make_channel: MakeChannel) -> None:
    channel = make_channel(max_queue_bytes=1000)
    fast_writer, fast = writer_for()
    slow_writer, slow = writer_for()
    slow.gate = gevent.event.Event()  # its socket is full: every send blocks
    fast_greenlet = listening(channel, fast_writer)
    slow_greenlet = listening(channel, slow_writer)
    wait_until(lambda: len(channel) == 2, 5, "two subscribers")
    for n in range(8):
        channel.publish(f"{n}:" + "x" * 400)
        wait_for(fast, n + 1)  # one delivery at a time
    assert slow.aborted and not slow_writer.is_active
    slow_greenlet.join(timeout=5)
    assert isinstance(slow_greenlet.value, BackpressureDetected)
    assert len(channel) == 1 and len(received(fast)) == 8
    fast_writer.close()
    fast_greenlet.join(timeout=5)


def test_through_the_test_client_with_resumption(make_channel: MakeChannel) -> None:
    channel = make_channel()
    client = TestClient(channel_app(channel), sse_heartbeat=0)
    with client.stream("GET", "/live") as first, client.stream("GET", "/live") as second:
        wait_until(lambda: len(channel) == 2, 5, "two subscribers")
        ids = [channel.publish(f"e{n}", event="news") for n in range(3)]
        one, two = first.iter_events(), second.iter_events()
        assert [(e.id, e.data) for e in (next(one) for _ in range(3))] == list(
            zip(ids, ["e0", "e1", "e2"], strict=True)
        )
        assert [next(two).id for _ in range(3)] == ids
    wait_until(lambda: len(channel) == 0, 5, "the subscribers to leave")
    ids.append(channel.publish("e3", event="news"))
    with client.stream("GET", "/live", headers={"last-event-id": ids[1]}) as resumed:
        events = resumed.iter_events()
        assert [(e.id, e.data) for e in (next(events), next(events))] == [(ids[2], "e2"), (ids[3], "e3")]
        wait_until(lambda: len(channel) == 1, 5, "the resumed subscriber")
        last = channel.publish("e4")
        event = next(events)
        assert (event.id, event.data) == (last, "e4")


def test_channel_names_are_validated(make_channel: MakeChannel) -> None:
    for bad in ["", "a b", "x*", "{tag}", "a\nb", "é", "x" * 201]:
        with pytest.raises(ValueError):
            make_channel(bad)
    with pytest.raises(ValueError):
        make_channel(gap_event="a\nb")
    assert make_channel("rooms:42.general_chat-1").name == "rooms:42.general_chat-1"
    assert "rooms:42" in repr(make_channel("rooms:42"))


@pytest.fixture(params=["memory-backend", pytest.param("redis", marks=pytest.mark.live)])
def shared_backend(request: pytest.FixtureRequest) -> Any:
    return MemoryBackend() if request.param == "memory-backend" else request.getfixturevalue("redis_backend")


def test_channels_of_one_name_share_a_backend(shared_backend: Any) -> None:
    def make_channel(name: str) -> Channel:
        return Channel(name, backend=shared_backend)

    first, second = make_channel("shared"), make_channel("shared")
    w1, t1 = writer_for()
    w2, t2 = writer_for()
    greenlets = [listening(first, w1), listening(second, w2)]
    wait_until(lambda: len(first) == len(second) == 1, 5, "both subscribers")
    ids = [first.publish("one"), second.publish("two")]
    expected = [{"id": ids[0], "data": "one"}, {"id": ids[1], "data": "two"}]
    assert wait_for(t1, 2) == wait_for(t2, 2) == expected
    w1.close()
    greenlets[0].join(5)
    third = second.publish("three")
    assert wait_for(t2, 3)[-1] == {"id": third, "data": "three"}
    assert len(received(t1)) == 2
    w2.close()
    greenlets[1].join(5)
    resumed, transport = writer_for(last_event_id=ids[0])
    greenlet = listening(make_channel("shared"), resumed)
    assert wait_for(transport, 2) == [{"id": ids[1], "data": "two"}, {"id": third, "data": "three"}]
    resumed.close()
    greenlet.join(5)
