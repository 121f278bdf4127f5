"""``h3green._redis_publish.Publisher``: concurrent publishes share pipelines, the queue is
bounded, and an event whose caller gave up before it was sent is never sent."""

from __future__ import annotations

from typing import Any

import gevent
import gevent.event
import pytest
import redis

from h3green._redis_publish import Publisher


class FakeClient:
    """Records each pipeline; ``gate`` (when set) holds ``execute`` like a slow Redis."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate: gevent.event.Event | None = None
        self.fail: Exception | None = None
        self.reply_error: Exception | None = None
        self.count = 0
        self.executing = 0

    def xadd(self, key: str, fields: dict[bytes, bytes], maxlen: int, approximate: bool) -> bytes:
        pipe = FakePipe(self)
        pipe.xadd(key, fields, maxlen, approximate)
        reply = pipe.execute(raise_on_error=False)[0]
        if isinstance(reply, Exception):
            raise reply
        return bytes(reply)

    def pipeline(self, transaction: bool) -> Any:
        assert transaction is False
        return FakePipe(self)


class FakePipe:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.keys: list[str] = []

    def xadd(self, key: str, fields: dict[bytes, bytes], maxlen: int, approximate: bool) -> None:
        assert approximate and maxlen == 10 and fields == {b"d": b"x"}
        self.keys.append(key)

    def execute(self, raise_on_error: bool) -> list[Any]:
        assert raise_on_error is False
        self.client.executing += 1
        if self.client.gate is not None:
            self.client.gate.wait()
        else:
            gevent.sleep(0)  # a reply takes a loop turn, as over a socket
        self.client.batches.append(self.keys)
        if self.client.fail is not None:
            raise self.client.fail
        replies: list[Any] = []
        for _ in self.keys:
            self.client.count += 1
            replies.append(self.client.reply_error or f"1-{self.client.count}".encode())
        return replies


def send(publisher: Publisher, key: str) -> bytes:
    return publisher.send(key, {b"d": b"x"}, 10)


def test_concurrent_publishes_share_pipelines_and_keep_each_callers_order() -> None:
    client = FakeClient()
    publisher = Publisher(client)
    results: dict[int, list[bytes]] = {}

    def run(n: int) -> None:
        results[n] = [send(publisher, f"k{n}") for _ in range(5)]

    gevent.joinall([gevent.spawn(run, n) for n in range(50)], timeout=5, raise_error=True)
    assert sum(len(b) for b in client.batches) == 250
    assert len(client.batches) <= 15  # 50 at once go out together: a lone one, then batches
    for ids in results.values():
        assert ids == sorted(ids, key=lambda i: int(i.split(b"-")[1]))
    assert send(publisher, "alone") == b"1-251"


def test_a_bounded_queue_and_a_caller_that_gave_up() -> None:
    client = FakeClient()
    client.gate = gevent.event.Event()  # Redis holds every reply
    publisher = Publisher(client, max_pending=1)
    first = gevent.spawn(send, publisher, "first")  # alone: sent directly
    second = gevent.spawn(send, publisher, "second")  # meanwhile: the writer sends it
    while client.executing < 2:
        gevent.sleep(0)
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.01):
        send(publisher, "given-up")  # queued behind them; its caller stops waiting
    waiting = gevent.spawn(send, publisher, "queued")
    gevent.sleep(0)
    with pytest.raises(redis.ConnectionError, match="already waiting"):
        send(publisher, "one-too-many")
    client.gate.set()
    assert first.get(timeout=5) and second.get(timeout=5) and waiting.get(timeout=5)
    assert client.batches == [["first"], ["second"], ["queued"]]  # "given-up" was never sent


def test_errors_reach_every_caller_of_the_batch() -> None:
    client = FakeClient()
    publisher = Publisher(client)
    client.reply_error = redis.ResponseError("OOM command not allowed")
    with pytest.raises(redis.ResponseError, match="OOM"):
        send(publisher, "k")
    client.reply_error = None
    client.fail = redis.ConnectionError("down")
    callers = [gevent.spawn(send, publisher, f"k{n}") for n in range(3)]
    gevent.joinall(callers, timeout=5)
    assert all(isinstance(c.exception, redis.ConnectionError) for c in callers)


def test_close_fails_whoever_still_waits() -> None:
    client = FakeClient()
    client.gate = gevent.event.Event()
    publisher = Publisher(client)
    callers = [gevent.spawn(send, publisher, f"k{n}") for n in range(4)]
    while client.executing < 2:  # one sent directly, one batch in the writer, two queued
        gevent.sleep(0)
    publisher.close()
    client.gate.set()  # the direct one was on its own connection: it completes
    gevent.joinall(callers, timeout=5)
    assert callers[0].get() == b"1-1"
    assert all(isinstance(c.exception, redis.ConnectionError) for c in callers[1:])
