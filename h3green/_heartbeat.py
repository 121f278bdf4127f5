"""Heartbeats for every open stream of a process from one timer: deadline buckets.

Strategy: a stream that has been idle for its heartbeat interval gets a comment line, so
proxies and clients keep it open. One timer per hub serves every stream: time is cut
into ticks of ``TICK`` seconds, and each stream sits in the bucket of the tick its next
heartbeat falls due in. The timer fires once per tick and walks only the buckets that
came due; a stream that wrote something since it was bucketed is not beaten but moved to
the bucket of its new due time (lazily: a write costs nothing here), and a stream that
ended is skipped and forgotten. So an idle stream costs a list slot, and a heartbeat costs
a bucket visit and the stream's own non-blocking send, made from the timer's callback:
no greenlet wakes up per heartbeat.

Heartbeats fall due up to one tick late (``TICK`` is 50 ms, next to intervals of
seconds); a stream is never beaten early.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
import weakref
from typing import Any, Final, Protocol

import gevent

__all__ = ["TICK", "Beating", "Heartbeats", "heartbeats"]

logger = logging.getLogger("h3green")

#: Seconds per timer tick (the resolution of heartbeat due times).
TICK: Final = 0.05


class Beating(Protocol):
    """What the timer needs of a stream."""

    #: The bucket the stream sits in (set by ``Heartbeats.add``).
    heartbeat_key: int

    def heartbeat(self, now: float) -> float:
        """Beat if due; the monotonic time of the next heartbeat, or 0 for never again."""


class Heartbeats:
    """The heartbeat timer of one hub and its deadline buckets."""

    __slots__ = ("_buckets", "_keys", "_timer")

    def __init__(self, loop: Any) -> None:
        #: Tick number -> the streams whose heartbeat falls due in that tick.
        self._buckets: dict[int, list[Beating]] = {}
        #: The bucket keys, as a heap: the timer only needs the earliest.
        self._keys: list[int] = []
        # PERF: one repeating libev timer for every stream of the process, instead of a
        # timer (or a parked greenlet) per stream. ``ref=False``: heartbeats alone do not
        # keep the loop running.
        self._timer = loop.timer(TICK, TICK, ref=False)

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def add(self, stream: Beating, due: float) -> None:
        """Beat *stream* (unless it wrote since) at monotonic time *due*."""
        key = stream.heartbeat_key = math.ceil(due / TICK)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [stream]
            heapq.heappush(self._keys, key)
            if not self._timer.active:
                self._timer.start(self._tick)
        else:
            bucket.append(stream)

    def remove(self, stream: Beating) -> None:
        """Forget *stream* (it ended): its bucket lets go of it now, not when it falls due,
        so an ended stream is not kept alive for up to a heartbeat interval."""
        bucket = self._buckets.get(stream.heartbeat_key)
        if bucket is not None:
            try:
                bucket.remove(stream)  # a bucket holds a tick's worth of streams
            except ValueError:
                pass

    def _tick(self) -> None:
        now = time.monotonic()
        current = math.floor(now / TICK)
        keys = self._keys
        buckets = self._buckets
        while keys and keys[0] <= current:
            for stream in buckets.pop(heapq.heappop(keys)):
                try:
                    due = stream.heartbeat(now)
                except Exception:
                    # A bug in one stream must not cost every other stream its heartbeat.
                    logger.exception("heartbeat of %r failed; it gets no more", stream)
                    continue
                # A due time after now lands in a later bucket: ceil(due / TICK) > current.
                if due:
                    self.add(stream, due)
        if not keys:
            self._timer.stop()


# Keyed by hub (a loop cannot be weakly referenced): a destroyed hub takes its timer along.
_by_hub: weakref.WeakKeyDictionary[Any, Heartbeats] = weakref.WeakKeyDictionary()


def heartbeats() -> Heartbeats:
    """The heartbeat timer of this thread's hub (made on first use)."""
    hub = gevent.get_hub()
    timer = _by_hub.get(hub)
    if timer is None:
        timer = _by_hub[hub] = Heartbeats(hub.loop)
    return timer
