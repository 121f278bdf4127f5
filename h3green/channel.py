"""Broadcast: ``Channel`` fans one published event out to every stream listening to it.

Strategy: publishing never waits for a subscriber. The event is encoded once, appended to
each subscriber's bounded queue and the subscriber's greenlet (the one inside
``channel.listen(writer)``) is woken to write it. A subscriber whose queue is full is too
slow for everyone else: its connection is dropped (``BackpressureDetected``) rather than
waited for or buffered without bound. A bounded ``History`` lets a client that reconnects
with ``Last-Event-ID`` get what it missed, then live events, none twice.

Backends: by default a channel lives in its process (the history above, ids counted by
the channel). Given a ``Backend`` (``h3green.redis.RedisBackend``), publishing goes to a
log shared by every process and machine, whose ids the events carry; the backend's one
reader per process hands each entry to ``_fan_out``, the same bounded queues and wake-ups
as in-process publishing. A client whose ``Last-Event-ID`` is older than what is kept, or
unknown, first gets a *gap notice* (``gap_event``) so the page can reload its state.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

import gevent
from gevent.hub import Waiter

from .errors import BackpressureDetected
from .memory import History, MemoryBackend, MemoryHistory, backlog
from .sse import SSEWriter, encode_event

__all__ = ["Backend", "Channel", "History", "MemoryBackend", "MemoryHistory", "validate_channel_name"]

logger = logging.getLogger("h3green")

#: Letters, digits and ``_ . : -``, 1 to 200 of them: no glob characters, no braces (Redis
#: Cluster hash tags), no whitespace, so a name taken from a request stays one key.
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


def validate_channel_name(name: str) -> str:
    """*name* if it is a valid channel name, else ``ValueError``."""
    if not isinstance(name, str) or not _CHANNEL_NAME.fullmatch(name):
        raise ValueError(f"channel names are 1-200 of A-Z a-z 0-9 _ . : -, got {name!r}")
    return name


class Backend(Protocol):
    """What a ``Channel`` publishes to and listens through when it is shared beyond its
    process (``h3green.redis.RedisBackend``). The backend delivers entries by calling
    ``channel._fan_out(payload)`` on the channels with local listeners."""

    def check(self, channel: Channel) -> None:
        """Raise ``ValueError`` when *channel*'s settings do not suit this backend."""

    def publish(
        self,
        channel: Channel,
        data: Any,
        *,
        event: str | None,
        id: str | None,
        retry: int | None,
        store: bool,
    ) -> str | None:
        """Append one event to the shared log; its id."""

    def join(
        self,
        channel: Channel,
        subscribe: Callable[[], None],
        last_event_id: str | None,
        replay: int,
        active: Callable[[], bool],
    ) -> list[bytes]:
        """Call ``subscribe()`` at the point of the log where the backlog it returns ends.

        The backlog is what the listener missed since *last_event_id* (after a gap
        notice when that is no longer known), or else the last *replay* events. Returns
        early, maybe before subscribing, once ``active()`` is false.
        """

    def leave(self, channel: Channel) -> None:
        """A listener of *channel* that joined has left (called once per ``join``)."""


class _Subscriber:
    __slots__ = ("dropped", "queue", "queued_bytes", "waiter", "writer")

    def __init__(self, writer: SSEWriter) -> None:
        self.writer = writer
        # PERF: a list, not a deque: an empty deque allocates a 64-slot block (~0.7 KiB
        # per idle subscriber), and the queue is only ever appended to and emptied whole.
        self.queue: list[bytes] = []
        self.queued_bytes = 0
        self.dropped = False
        #: Set while the listener is parked with nothing to send; whoever takes it wakes it.
        self.waiter: Waiter | None = None


class Channel:
    """In-process fan-out of events to every stream listening to it.

    ::

        news = Channel()

        def stream_news(writer):
            news.listen(writer)          # blocks until this client's stream ends

        news.publish({"title": "..."}, event="news")   # from any greenlet

    ``publish`` encodes once and never waits: each subscriber has a queue bounded by
    ``max_queue_events`` and ``max_queue_bytes``, and one whose queue is full is dropped
    (its writer raises ``BackpressureDetected``). Events get monotonic ids (``"1"``,
    ``"2"``...) unless ``auto_id`` is false or an id is given. The last ``history``
    events are kept (or handed to *store*, any ``History``) so a client that reconnects
    with ``Last-Event-ID`` first gets what it missed, then live events, none twice. When
    the id is older than what is kept, or unknown, an event named *gap_event* (data
    ``{"reason": "expired" | "unknown" | "lost"}``, no id) comes first so the page can
    reload its state; ``gap_event=None`` leaves it out.

    With a *backend* (``Channel("chat", backend=RedisBackend(url))``) the channel is shared
    by every process using that backend and a channel of the same *name*: ids come from
    the backend's log, and *history* bounds the log (about that many entries).
    """

    __slots__ = (
        "_backend",
        "_seq",
        "_subscribers",
        "_to_wake",
        "auto_id",
        "gap_event",
        "history",
        "max_history",
        "max_queue_bytes",
        "max_queue_events",
        "name",
    )

    def __init__(  # noqa: PLR0913 - keyword-only bounds of the queues and history, each documented
        self,
        name: str | None = None,
        *,
        backend: Backend | None = None,
        history: int = 100,
        max_queue_events: int = 256,
        max_queue_bytes: int = 256 * 1024,
        auto_id: bool = True,
        store: History | None = None,
        gap_event: str | None = "gap",
    ) -> None:
        if max_queue_events < 1 or max_queue_bytes < 1:
            raise ValueError("a channel's subscriber queues need room for at least one event")
        if name is not None:
            validate_channel_name(name)
        if gap_event is not None and ("\r" in gap_event or "\n" in gap_event):
            raise ValueError(f"SSE event name may not contain CR or LF: {gap_event!r}")
        self.name = name
        self.history: History = store if store is not None else MemoryHistory(history)
        self.max_history = history
        self.max_queue_events = max_queue_events
        self.max_queue_bytes = max_queue_bytes
        self.auto_id = auto_id
        self.gap_event = gap_event
        self._seq = 0
        self._subscribers: set[_Subscriber] = set()
        self._to_wake: list[Waiter] = []
        self._backend = backend
        if backend is not None:
            if name is None:
                raise ValueError("a channel with a backend needs a name (Channel('chat', backend=...))")
            if store is not None:
                raise ValueError("a channel with a backend keeps its history in the backend, not in store=")
            backend.check(self)

    def __len__(self) -> int:
        """The number of streams listening now."""
        return len(self._subscribers)

    def __repr__(self) -> str:
        name = "" if self.name is None else f" {self.name!r}"
        return f"<Channel{name} subscribers={len(self._subscribers)} seq={self._seq}>"

    def gap_notice(self, reason: str) -> bytes:
        """The encoded gap notice (empty when ``gap_event`` is None)."""
        if self.gap_event is None:
            return b""
        return encode_event({"reason": reason}, event=self.gap_event)

    def publish(
        self,
        data: Any,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        store: bool = True,
    ) -> str | None:
        """Send one event to every subscriber; returns its id.

        ``store=False`` keeps the event out of the history (presence notices and other
        news a reconnecting client has no use for). With a backend, the id is the log's
        (passing one is a ``ValueError``) and a backend that cannot be reached raises
        ``ChannelUnavailable`` within its timeout.
        """
        if self._backend is not None:
            return self._backend.publish(self, data, event=event, id=id, retry=retry, store=store)
        seq = self._seq + 1
        if id is None and self.auto_id:
            id = str(seq)
        payload = encode_event(data, event=event, id=id, retry=retry)
        self._seq = seq
        if store:
            self.history.append(seq, id, payload)
        self._fan_out(payload)
        return id

    def _fan_out(self, payload: bytes) -> None:
        """Queue *payload* for every subscriber and wake the parked ones (never blocks)."""
        size = len(payload)
        max_events = self.max_queue_events
        max_bytes = self.max_queue_bytes - size
        slow = None
        to_wake = self._to_wake
        was_empty = not to_wake
        # PERF: per subscriber, a few comparisons and two list/deque appends: no I/O, no
        # encoding, no lock, and no per-subscriber loop callback -- the parked listeners
        # are woken by one callback for the whole batch (about 0.1 us a subscriber here
        # against 0.5 us for an Event.set each).
        for sub in self._subscribers:
            queue = sub.queue
            if len(queue) >= max_events or sub.queued_bytes > max_bytes:
                if slow is None:
                    slow = [sub]
                else:
                    slow.append(sub)
                continue
            queue.append(payload)
            sub.queued_bytes += size
            waiter = sub.waiter
            if waiter is not None:
                sub.waiter = None
                to_wake.append(waiter)
        if slow is not None:
            for sub in slow:
                self._drop(sub)
        if was_empty and to_wake:
            gevent.get_hub().loop.run_callback(self._wake_all)

    def _wake(self, sub: _Subscriber) -> None:
        waiter = sub.waiter
        if waiter is not None:
            sub.waiter = None
            if not self._to_wake:
                gevent.get_hub().loop.run_callback(self._wake_all)
            self._to_wake.append(waiter)

    def _wake_all(self) -> None:
        # In the hub: each switch runs one listener until it blocks again (on its socket
        # or its next wait). A listener killed meanwhile is not waiting any more; its
        # waiter just keeps the value.
        waiters, self._to_wake = self._to_wake, []
        for waiter in waiters:
            waiter.switch(None)

    def _drop(self, sub: _Subscriber) -> None:
        self._subscribers.discard(sub)
        sub.dropped = True
        sub.queue.clear()
        sub.queued_bytes = 0
        logger.info("SSE subscriber %r dropped: it fell %d events behind", sub.writer, self.max_queue_events)
        sub.writer.drop()
        self._wake(sub)

    def listen(self, writer: SSEWriter, *, replay: int = 0) -> None:
        """Subscribe *writer* and send it the channel's events until its stream ends.

        Call it from the stream callback (it blocks there). A client that sent
        ``Last-Event-ID`` first gets the events it missed that the history still holds
        (after a gap notice when the id is older than that, or unknown); otherwise the
        last *replay* events are sent first. Raises ``BackpressureDetected`` when the
        subscriber was dropped for falling behind.
        """
        if not writer.is_active:
            return
        sub = _Subscriber(writer)
        writer.on_close(lambda: self._wake(sub))
        queue = sub.queue
        backend = self._backend
        try:
            if backend is None:
                backlog = self._backlog(writer.last_event_id, replay)
                # Subscribing right after reading the history, with no switch in between,
                # makes the hand-over exact: every later event lands in the queue.
                self._subscribers.add(sub)
            else:
                # The backend subscribes at the point of its log where the backlog ends.
                backlog = backend.join(
                    self,
                    lambda: self._subscribers.add(sub),
                    writer.last_event_id,
                    replay,
                    lambda: writer.is_active,
                )
            if backlog:
                writer.send_raw(b"".join(backlog))
            while True:
                if queue:
                    # PERF: whatever piled up while we were writing goes out in one write.
                    payload = queue[0] if len(queue) == 1 else b"".join(queue)
                    queue.clear()
                    sub.queued_bytes = 0
                    writer.send_raw(payload)
                elif sub.dropped:
                    raise BackpressureDetected("the client fell too far behind the channel and was dropped")
                elif not writer.is_active:
                    return
                else:
                    waiter = sub.waiter = Waiter()
                    try:
                        waiter.get()
                    finally:
                        sub.waiter = None
        finally:
            self._subscribers.discard(sub)
            if backend is not None:
                backend.leave(self)

    def _backlog(self, last_event_id: str | None, replay: int) -> list[bytes]:
        return backlog(self.history, self._seq, self, last_event_id, replay)
