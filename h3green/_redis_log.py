"""How h3green lays out a channel's Redis stream, and replays read from it.

One entry is one event: field ``d`` holds the event encoded without its id (the entry id
is the event id, so it is known only once Redis has assigned it), plus ``l`` when the
event is live only (``store=False``: delivered, never replayed). An entry with field
``g`` marks where Redis lost entries (a restart without persistence): replays and the
reader turn it into a gap notice, and consecutive ones into one.

Replays read up to the position *end* where the listener subscribed, in pages, from the
pooled client; the reader delivers everything after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import redis

if TYPE_CHECKING:
    from .channel import Channel

DATA, LIVE, GAP = b"d", b"l", b"g"
#: Entries one replay request fetches at a time.
PAGE = 500
_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")

StreamId = tuple[int, int]
Entry = tuple[bytes, dict[bytes, bytes]]


def parse_id(value: str | bytes) -> StreamId | None:
    """``(milliseconds, sequence)`` of a stream entry id, or None when it is not one."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    match = _STREAM_ID.fullmatch(text)
    return (int(match[1]), int(match[2])) if match else None


def successor(entry_id: bytes) -> str:
    """The smallest entry id after *entry_id*."""
    ms, seq = cast(StreamId, parse_id(entry_id))
    return f"{ms}-{seq + 1}"


def framed(entry_id: bytes, payload: bytes) -> bytes:
    """The event as clients get it: its id field, then the stored fields."""
    return b"id: " + entry_id + b"\n" + payload


def exists(client: Any, key: str, entry: StreamId) -> bool:
    """Whether the stream still holds *entry* (False when Redis cannot say)."""
    text = f"{entry[0]}-{entry[1]}"
    try:
        return bool(client.xrange(key, text, text, count=1))
    except redis.RedisError:
        return False


def since(client: Any, channel: Channel, key: str, last_event_id: str, end: bytes) -> list[bytes]:
    """What a client that last saw *last_event_id* missed, up to *end*: a gap notice first
    when that id is older than what the stream holds (``expired``) or not one of its
    entries (``unknown``, then everything the stream holds)."""
    wanted = parse_id(last_event_id)
    reason: str | None = None
    if wanted is None:
        start = "-"
        reason = "unknown"
    else:
        start = f"({wanted[0]}-{wanted[1]}"
        if not exists(client, key, wanted):
            first = client.xrange(key, "-", "+", count=1)
            if first and wanted < cast(StreamId, parse_id(first[0][0])):
                reason = "expired"
            else:  # not one of ours: all that remains
                start, reason = "-", "unknown"
    backlog = [channel.gap_notice(reason)] if reason is not None else []
    gap = reason is not None
    for entry_id, fields in _range(client, key, start, end):
        if GAP in fields:
            if not gap:
                backlog.append(channel.gap_notice("lost"))
            gap = True
        elif LIVE not in fields:
            backlog.append(framed(entry_id, fields[DATA]))
            gap = False
    return backlog


def _range(client: Any, key: str, start: str, end: bytes) -> Iterator[Entry]:
    while True:
        page: list[Entry] = client.xrange(key, start, end, count=PAGE)
        yield from page
        if len(page) < PAGE:
            return
        start = "(" + page[-1][0].decode()


def recent(client: Any, key: str, end: bytes, count: int) -> list[bytes]:
    """The last *count* stored events up to *end*, oldest first (live-only ones and gap
    markers skipped)."""
    found: list[bytes] = []
    top: str | bytes = end
    size = min(PAGE, max(count * 2, 16))
    while len(found) < count:
        page: list[Entry] = client.xrevrange(key, top, "-", count=size)
        for entry_id, fields in page:
            if DATA in fields and LIVE not in fields:
                found.append(framed(entry_id, fields[DATA]))
                if len(found) == count:
                    break
        if len(page) < size:
            break
        top = "(" + page[-1][0].decode()
    found.reverse()
    return found
