"""Publishing to Redis in batches: concurrent ``publish`` calls of a process share round trips.

Strategy: ``send`` queues one ``XADD`` and waits for its reply; one writer greenlet per
backend sends whatever is queued as one pipeline (no transaction) while another publish
is on its way, so a hundred handlers
publishing at once cost a few round trips and pooled-connection checkouts, not a hundred
(a checkout alone is ~50 us of redis-py under gevent). A lone publisher waits as long as
for a direct ``XADD``: it is one, sent from its own greenlet. The queue is bounded (``max_pending``):
beyond it ``send`` fails at once. An event whose caller stopped waiting (its timeout) is
dropped if it has not been sent yet, so a ``publish`` that failed did not publish later.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gevent
import redis
from gevent.event import AsyncResult

__all__ = ["Publisher"]


class _Item:
    __slots__ = ("fields", "key", "maxlen", "result")

    def __init__(self, key: str, fields: dict[bytes, bytes], maxlen: int) -> None:
        self.key = key
        self.fields = fields
        self.maxlen = maxlen
        self.result = AsyncResult()


class Publisher:
    """Batches ``XADD`` commands from concurrent greenlets into pipelines on *client*."""

    __slots__ = ("_busy", "_client", "_queue", "_sending", "_writer", "batch", "max_pending")

    def __init__(self, client: Any, *, max_pending: int = 10_000, batch: int = 256) -> None:
        self._client = client
        self._queue: deque[_Item] = deque()
        self._writer: gevent.Greenlet | None = None
        self._sending: list[_Item] = []
        #: A lone publish is being sent directly (nothing to batch it with).
        self._busy = False
        self.max_pending = max_pending
        self.batch = batch

    def send(self, key: str, fields: dict[bytes, bytes], maxlen: int) -> bytes:
        """The entry id of one ``XADD key MAXLEN ~ maxlen * fields``; redis-py's errors."""
        if not self._busy and self._writer is None:
            # PERF: nobody else is publishing: send it from here, with no writer greenlet
            # to wake and no extra loop turn; whoever comes meanwhile is batched.
            self._busy = True
            try:
                direct: bytes = self._client.xadd(key, fields, maxlen=maxlen, approximate=True)
            finally:
                self._busy = False
            return direct
        if len(self._queue) >= self.max_pending:
            raise redis.ConnectionError(f"{self.max_pending} events are already waiting for Redis")
        item = _Item(key, fields, maxlen)
        self._queue.append(item)
        if self._writer is None:
            self._writer = gevent.spawn(self._write)
        try:
            reply: bytes = item.result.get()
        except BaseException:
            # Given up (a timeout): not sent yet, it never will be.
            if item in self._queue:
                self._queue.remove(item)
            raise
        return reply

    def _write(self) -> None:
        queue = self._queue
        try:
            while queue:
                batch = self._sending = [queue.popleft() for _ in range(min(len(queue), self.batch))]
                pipe = self._client.pipeline(transaction=False)
                for item in batch:
                    pipe.xadd(item.key, item.fields, maxlen=item.maxlen, approximate=True)
                try:
                    replies = pipe.execute(raise_on_error=False)
                except redis.RedisError as exc:
                    replies = [exc] * len(batch)
                for item, reply in zip(batch, replies, strict=True):
                    if isinstance(reply, Exception):
                        item.result.set_exception(reply)
                    else:
                        item.result.set(reply)
                self._sending = []
        finally:
            self._writer = None

    def close(self) -> None:
        """Stop the writer; whoever still waits gets a ``ConnectionError``."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.kill()
        for item in [*self._sending, *self._queue]:
            if not item.result.ready():
                item.result.set_exception(redis.ConnectionError("the backend was closed"))
        self._sending = []
        self._queue.clear()
