"""In-process logs: a channel's recent events (``MemoryHistory``), and ``MemoryBackend``,
named channels shared inside one process.

``Channel()`` keeps its own ``MemoryHistory`` and counts its own ids: the embedded
default, no backend involved. ``MemoryBackend`` is the same log behind the ``Backend``
interface, kept per channel *name*: every ``Channel("chat", backend=memory)`` of a process
shares it, as every process shares a ``RedisBackend``'s. Switching between the two is one
line (``RedisBackend(url) if url else MemoryBackend()``), and one behavioural test suite
runs on both. Replays, gap notices and ids are computed the same way for both in-process
forms (``backlog``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .sse import encode_event

if TYPE_CHECKING:
    from .channel import Channel

__all__ = ["History", "MemoryBackend", "MemoryHistory", "backlog"]


class History(Protocol):
    """Where a ``Channel`` keeps its recent events, for clients that reconnect.

    ``MemoryHistory`` keeps them in this process; a store shared between processes
    (Redis, say) implements the same three methods. Entries are encoded events in publish
    order, each with the channel's sequence number and its id (None when it has none).
    """

    def append(self, seq: int, id: str | None, payload: bytes) -> None:
        """Remember one event, forgetting the oldest ones beyond the store's bound."""

    def since(self, last_id: str) -> list[bytes]:
        """The events published after the one with id *last_id* that are still kept."""

    def recent(self, count: int) -> list[bytes]:
        """The last *count* events kept, oldest first."""


class MemoryHistory:
    """The last ``maxlen`` events of a channel, in memory.

    An id the history no longer holds but that is a decimal number is taken as a sequence
    number, which is what channel-assigned ids are: a client that was away for longer than
    the history reaches back gets everything still kept, and one that comes back after a
    restart (ids from before it) gets nothing twice.
    """

    __slots__ = ("_entries", "_ids", "maxlen")

    def __init__(self, maxlen: int = 100) -> None:
        if maxlen < 0:
            raise ValueError(f"history length must be >= 0, got {maxlen}")
        self.maxlen = maxlen
        self._entries: deque[tuple[int, str | None, bytes]] = deque()
        self._ids: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, seq: int, id: str | None, payload: bytes) -> None:
        if not self.maxlen:
            return
        entries = self._entries
        if len(entries) >= self.maxlen:
            old_seq, old_id, _ = entries.popleft()
            if old_id is not None and self._ids.get(old_id) == old_seq:
                del self._ids[old_id]
        entries.append((seq, id, payload))
        if id is not None:
            self._ids[id] = seq

    def since(self, last_id: str) -> list[bytes]:
        seq = self._ids.get(last_id)
        if seq is None:
            if not (last_id.isascii() and last_id.isdigit()):
                return []
            seq = int(last_id)
        missed = []
        for entry_seq, _, payload in reversed(self._entries):
            if entry_seq <= seq:
                break
            missed.append(payload)
        missed.reverse()
        return missed

    def recent(self, count: int) -> list[bytes]:
        if count <= 0:
            return []
        return [payload for _, _, payload in list(self._entries)[-count:]]

    def lost(self, last_id: str, seq: int) -> str | None:  # noqa: PLR0911 - one early answer per kind of id
        """Why events after *last_id* may be missing (``"expired"``, ``"unknown"``), or None.

        *seq* is the channel's latest sequence number. Numbers ahead of it come from
        before a restart; numbers behind the oldest event kept were evicted.
        """
        if last_id in self._ids:
            return None
        if not (last_id.isascii() and last_id.isdigit()):
            return "unknown"
        number = int(last_id)
        if number > seq:
            return "unknown"
        if number == seq:
            return None
        if not self.maxlen:
            return "expired"
        entries = self._entries
        # With nothing kept, everything since was store=False: nothing to replay was lost.
        if entries and number < entries[0][0] - 1:
            return "expired"
        return None


def backlog(
    history: History, seq: int, channel: Channel, last_event_id: str | None, replay: int
) -> list[bytes]:
    """What a listener gets before live events: what it missed since *last_event_id*
    (after a gap notice when that id is too old or unknown), else the last *replay*."""
    if last_event_id is None:
        return history.recent(replay)
    lost = getattr(history, "lost", None)
    reason = lost(last_event_id, seq) if lost is not None else None
    # An id that is not one of ours gets all that remains.
    missed = history.recent(channel.max_history) if reason == "unknown" else history.since(last_event_id)
    if reason is not None and channel.gap_event is not None:
        return [channel.gap_notice(reason), *missed]
    return missed


class _Log:
    __slots__ = ("channels", "history", "seq")

    def __init__(self, maxlen: int) -> None:
        self.seq = 0
        self.history = MemoryHistory(maxlen)
        #: Listeners (joining or joined) per channel object on this name.
        self.channels: dict[Channel, int] = {}


class MemoryBackend:
    """Channels shared by name inside one process (``Channel("chat", backend=memory)``).

    A name's log (ids, the last ``history`` events of the first channel created with it)
    lives as long as the backend, whether or not anyone listens, so a client can resume.
    """

    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}

    def __repr__(self) -> str:
        return f"<MemoryBackend channels={len(self._logs)}>"

    def _log(self, channel: Channel) -> _Log:
        name = channel.name or ""
        log = self._logs.get(name)
        if log is None:
            log = self._logs[name] = _Log(channel.max_history)
        return log

    def check(self, channel: Channel) -> None:
        self._log(channel)

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
        log = self._log(channel)
        seq = log.seq + 1
        if id is None and channel.auto_id:
            id = str(seq)
        payload = encode_event(data, event=event, id=id, retry=retry)
        log.seq = seq
        if store:
            log.history.append(seq, id, payload)
        for listening in log.channels:
            listening._fan_out(payload)
        return id

    def join(
        self,
        channel: Channel,
        subscribe: Callable[[], None],
        last_event_id: str | None,
        replay: int,
        active: Callable[[], bool],
    ) -> list[bytes]:
        log = self._log(channel)
        log.channels[channel] = log.channels.get(channel, 0) + 1
        missed = backlog(log.history, log.seq, channel, last_event_id, replay)
        # No switch since reading the log: every later event lands in the queue.
        subscribe()
        return missed

    def leave(self, channel: Channel) -> None:
        log = self._log(channel)
        left = log.channels.pop(channel, 0) - 1
        if left > 0:
            log.channels[channel] = left
