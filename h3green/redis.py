"""``RedisBackend``: a ``Channel`` shared by every process and machine, on Redis Streams.

::

    from h3green.sse import Channel
    from h3green.redis import RedisBackend

    backend = RedisBackend("redis://127.0.0.1:6379/0")   # one per process, shared by its channels
    chat = Channel("chat", backend=backend, history=1000)

Strategy: the stream ``<prefix><channel name>`` is the channel's log. ``publish`` is one
``XADD ... MAXLEN ~ history`` (batched with concurrent ones, ``_redis_publish.py``); the entry holds the event already
encoded, without its id (field ``d``; no pickle), and the entry id Redis assigns is the
event id every client sees, monotonic across every publisher. One reader greenlet per
backend per process runs a blocking ``XREAD`` over the keys of the channels that have
local listeners, always from explicit last-seen ids (never ``$``, which would skip what
arrived while it reconnected), on a connection of its own without a socket timeout; each
entry is encoded once per process (``id: <entry id>`` + the stored bytes) and handed to
``Channel._fan_out``, the bounded per-subscriber queues of the in-process path.

A listener joins at the reader's position ``P`` for its key: it subscribes (live entries
after ``P`` now reach its queue), then reads its backlog with ``XRANGE`` up to ``P``, so
the two meet exactly: none twice, none skipped. A key that gets its first local listener
is positioned by the reader at the stream's last entry; the reader is woken for it with
``CLIENT UNBLOCK`` (and its ``XREAD`` has a block timeout, so it rereads its keys anyway).

Failures: the reader reconnects with bounded exponential back-off and logs once per state
change. On reconnect (and after a read as long as the history) it checks that the entry
it read last still exists; when Redis lost it (a restart without persistence, or
trimming while it was away or behind), listeners get a gap notice,
and when the stream now ends below it, a marker entry (field ``g``) is added after it so
ids never go backwards; replays turn markers into gap notices too. ``store=False`` events
are entries flagged ``l``: delivered live, skipped by replays. ``publish`` raises
``ChannelUnavailable`` when Redis does not take the event within ``timeout`` seconds.

redis-py's sockets must be cooperative (gevent monkey patching, as ``python -m h3green``
and the gunicorn worker do) for the reader not to stall the process; publishing from a
plain script needs nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

import gevent
import gevent.event
import redis
import redis.connection
from gevent import socket as gsocket
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import _redis_log as _log
from ._redis_log import DATA, GAP, LIVE, StreamId, framed, parse_id, successor
from ._redis_publish import Publisher
from .errors import ChannelUnavailable
from .sse import encode_event

if TYPE_CHECKING:
    from .channel import Channel

__all__ = ["RedisBackend", "parse_id", "redis_is_cooperative"]

logger = logging.getLogger("h3green")


def _redacted(url: str) -> str:
    """*url* without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is not None:
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}")
    query = re.sub(r"(^|&)password=[^&]*", r"\1password=***", parts.query)
    return urlunsplit(parts._replace(query=query))


def redis_is_cooperative() -> bool:
    """Whether redis-py opens gevent sockets (monkey patching), so a blocking read yields."""
    sockets: Any = getattr(redis.connection, "socket")  # noqa: B009 - not re-exported
    return bool(sockets.socket is gsocket.socket)


class _Key:
    """One stream key with local listeners: the channels on it and the reader's position."""

    __slots__ = ("after_gap", "channels", "last_id", "maxlen", "ready")

    def __init__(self, maxlen: int) -> None:
        #: Listeners (joining or joined) per channel: a key is read while any are left.
        self.channels: dict[Channel, int] = {}
        #: The last entry id delivered here; None until the reader has positioned the key.
        self.last_id: bytes | None = None
        self.maxlen = maxlen
        self.ready = gevent.event.Event()
        #: The last thing delivered was a gap notice (consecutive markers make one notice).
        self.after_gap = False


class RedisBackend:
    """Channels on Redis Streams, shared by every process that uses the same Redis.

    *url* is passed to redis-py: ``redis://[:password@]host:port/db``, ``rediss://`` for
    TLS, ``unix:///path/to/redis.sock``; *redis_options* go to its connections too.
    *prefix* starts every key (``h3green:chat``). ``publish`` gives up after *timeout*
    seconds or when *max_pending* events already wait to be sent (``ChannelUnavailable``),
    and refuses events larger than *max_event_bytes* encoded (``ValueError``); concurrent
    publishes of a process go out together, in one pipeline. The reader's ``XREAD`` blocks at most *block* seconds, takes
    at most *read_count* entries per key, waits *coalesce* seconds after a read that
    brought entries (so a burst wakes listeners once, not per event), and reconnects after
    ``reconnect_min`` doubling up to ``reconnect_max`` seconds.
    """

    def __init__(  # noqa: PLR0913 - keyword-only limits and timeouts, each bounded and documented
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "h3green:",
        timeout: float = 2.0,
        max_event_bytes: int = 64 * 1024,
        pool_size: int = 32,
        max_pending: int = 10_000,
        block: float = 5.0,
        read_count: int = 1000,
        coalesce: float = 0.002,
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
        **redis_options: Any,
    ) -> None:
        if min(timeout, block, max_event_bytes, pool_size, max_pending, read_count) <= 0:
            raise ValueError(
                "timeout, block, max_event_bytes, pool_size, max_pending and read_count must be positive"
            )
        if coalesce < 0:
            raise ValueError("coalesce must be >= 0 seconds")
        if not 0 < reconnect_min <= reconnect_max:
            raise ValueError("reconnect back-off needs 0 < reconnect_min <= reconnect_max")
        self.url = _redacted(url)
        self.prefix = prefix
        self.timeout = timeout
        self.max_event_bytes = max_event_bytes
        self.block = block
        self.read_count = read_count
        self.coalesce = coalesce
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        no_retry = Retry(NoBackoff(), 0)
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=no_retry,
            **redis_options,
        )
        #: The pooled client ``publish`` and replays use (handy for an app's own keys).
        self.redis = redis.Redis(connection_pool=pool)
        # redis-py's precise reply types (bytes | str | None...) do not know that replies are
        # bytes here (decode_responses is off): the commands go through untyped handles.
        self._pooled: Any = self.redis
        self._publisher = Publisher(self._pooled, max_pending=max_pending)
        # The reader's own connection: no socket timeout (a blocking XREAD is silent for
        # up to ``block`` seconds); keepalive notices a peer that vanished.
        self._reader: Any = redis.Redis(
            connection_pool=redis.ConnectionPool.from_url(
                url,
                max_connections=1,
                socket_timeout=None,
                socket_connect_timeout=timeout,
                retry=no_retry,
                redis_connect_func=self._reader_connected,
                **({"socket_keepalive": True} if urlsplit(url).scheme in ("redis", "rediss") else {}),
                **redis_options,
            )
        )
        self._keys: dict[str, _Key] = {}
        self._has_keys = gevent.event.Event()
        self._up = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._connected: bool | None = None
        self._reader_id: int | None = None
        self._blocked = False

    def __repr__(self) -> str:
        return f"<RedisBackend {self.url} prefix={self.prefix!r} keys={len(self._keys)}>"

    @property
    def connected(self) -> bool:
        """Whether the reader is connected now (False before it first ran)."""
        return bool(self._connected)

    def key(self, channel: Channel) -> str:
        return f"{self.prefix}{channel.name}"

    # -- the Backend interface ---------------------------------------------------------

    def check(self, channel: Channel) -> None:
        if channel.max_history < 1:
            raise ValueError(
                "a Redis channel needs history >= 1: its stream is the log live events come from"
            )
        if not channel.auto_id:
            raise ValueError(
                "a Redis channel's event ids are its stream entry ids: auto_id=False does not apply"
            )

    def publish(
        self,
        channel: Channel,
        data: Any,
        *,
        event: str | None,
        id: str | None,
        retry: int | None,
        store: bool,
    ) -> str:
        if id is not None:
            raise ValueError("a Redis channel's event ids are its stream entry ids: publish without id=")
        payload = encode_event(data, event=event, retry=retry)
        if len(payload) > self.max_event_bytes:
            raise ValueError(
                f"event of {len(payload)} bytes encoded is larger than max_event_bytes={self.max_event_bytes}"
            )
        fields = {DATA: payload} if store else {DATA: payload, LIVE: b"1"}
        timer = gevent.Timeout(self.timeout)
        timer.start()
        try:
            entry_id = self._publisher.send(self.key(channel), fields, channel.max_history)
        except (redis.RedisError, gevent.Timeout) as exc:
            if isinstance(exc, gevent.Timeout) and exc is not timer:
                raise
            raise ChannelUnavailable(
                f"channel {channel.name!r}: Redis at {self.url} did not take the event within {self.timeout} s ({exc})"
            ) from None
        finally:
            timer.close()
        return entry_id.decode()

    def join(
        self,
        channel: Channel,
        subscribe: Callable[[], None],
        last_event_id: str | None,
        replay: int,
        active: Callable[[], bool],
    ) -> list[bytes]:
        key = self.key(channel)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Key(channel.max_history)
            self._start_reader()
            self._has_keys.set()
            self._interrupt()
        state.channels[channel] = state.channels.get(channel, 0) + 1
        wanted = parse_id(last_event_id) if last_event_id is not None else None
        while True:
            if not active():
                return []
            if state.last_id is None:
                state.ready.wait(0.25)
                continue
            if (
                wanted is not None
                and wanted > cast(StreamId, parse_id(state.last_id))
                and _log.exists(self._pooled, key, wanted)
            ):
                # Delivered by another process's reader, not yet by ours: wait until ours
                # has, or it would come again live.
                gevent.sleep(0.002)
                continue
            end = state.last_id
            break
        subscribe()
        if last_event_id is None and replay <= 0:
            return []
        delay = self.reconnect_min
        while active():
            try:
                if last_event_id is not None:
                    return _log.since(self._pooled, channel, key, last_event_id, end)
                return _log.recent(self._pooled, key, end, replay)
            except redis.RedisError:
                # Redis is down: the stream stays open (heartbeats go on) until it is back.
                self._up.wait(delay)
                delay = min(delay * 2, self.reconnect_max)
        return []

    def leave(self, channel: Channel) -> None:
        key = self.key(channel)
        state = self._keys.get(key)
        if state is not None:
            left = state.channels.pop(channel, 0) - 1
            if left > 0:
                state.channels[channel] = left
            elif not state.channels:
                del self._keys[key]

    def close(self) -> None:
        """Stop the reader and close every connection (the backend is unusable after)."""
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill()
        self._publisher.close()
        self._reader.close()
        self._reader.connection_pool.disconnect()
        self.redis.close()
        self.redis.connection_pool.disconnect()

    def __enter__(self) -> RedisBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the reader --------------------------------------------------------------------

    def _start_reader(self) -> None:
        if self._greenlet is None or self._greenlet.dead:
            if not redis_is_cooperative():
                logger.warning(
                    "redis-py uses blocking sockets: the Redis reader will stall this process "
                    "(apply gevent monkey patching first, as python -m h3green and the gunicorn worker do)"
                )
            self._greenlet = gevent.spawn(self._run)

    def _interrupt(self) -> None:
        """Make a reader blocked in ``XREAD`` reread its keys (one has been added)."""
        for _ in range(20):
            if not self._blocked or self._reader_id is None:
                return
            try:
                if self._pooled.client_unblock(self._reader_id):
                    return
            except redis.RedisError:
                return
            # Our XREAD is on its way to Redis and not blocking yet: try again shortly.
            gevent.sleep(0.002)

    def _reader_connected(self, connection: Any) -> None:
        """redis-py remakes a connection it finds closed when a command takes it from the
        pool: under a running reader that would skip the resync, so it is a failure."""
        connection.on_connect()
        if self._connected:
            raise redis.ConnectionError("the connection to Redis was closed and remade")

    def _set_state(self, up: bool, error: Exception | None = None) -> None:
        if up == self._connected:
            return
        self._connected = up
        if up:
            self._up.set()
            logger.info("Redis at %s: connected, reading %d channel(s)", self.url, len(self._keys))
        else:
            self._up.clear()
            self._reader_id = None
            logger.warning(
                "Redis at %s unreachable (%s): streams stay open; reconnecting with back-off up to %.1f s",
                self.url,
                error,
                self.reconnect_max,
            )

    def _run(self) -> None:
        delay = self.reconnect_min
        while True:
            if not self._keys:
                self._has_keys.clear()
                self._has_keys.wait()
                continue
            try:
                if not self._connected:
                    self._reader_id = self._reader.client_id()
                    self._resync()
                    self._set_state(True)
                    delay = self.reconnect_min
                self._read_once()
            except Exception as exc:
                if not isinstance(exc, redis.RedisError) and self._connected is not False:
                    logger.exception("Redis reader at %s failed", self.url)
                self._set_state(False, exc)
                gevent.sleep(delay)
                delay = min(delay * 2, self.reconnect_max)

    def _read_once(self) -> None:
        reader = self._reader
        for key, state in list(self._keys.items()):
            if state.last_id is None:
                top = reader.xrevrange(key, "+", "-", count=1)
                state.last_id = top[0][0] if top else b"0-0"
                state.ready.set()
        streams = {key: state.last_id for key, state in self._keys.items() if state.last_id is not None}
        if not streams:
            return
        self._blocked = True
        try:
            response = reader.xread(streams, count=self.read_count, block=int(self.block * 1000))
        finally:
            self._blocked = False
        if response:
            items = response.items() if isinstance(response, dict) else response
            for key, entries in items:
                self._deliver(key.decode() if isinstance(key, bytes) else key, entries)
            if self.coalesce:
                # PERF: under a steady stream of events, let the next few pile up in Redis
                # and wake the listeners once for all of them, not once per event (a wake
                # costs a greenlet switch per listener). An idle channel's first event
                # still goes out at once: the blocking XREAD returns as it lands.
                gevent.sleep(self.coalesce)

    def _deliver(self, key: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        state = self._keys.get(key)
        if state is None or not entries:
            return
        # PERF: everything this read brought for the key becomes one payload, fanned out
        # once: a subscriber's queue grows by one item per read, not per event.
        parts: list[bytes | None] = []
        if len(entries) >= min(self.read_count, state.maxlen) and self._trimmed_past(key, state.last_id):
            # This reader fell behind by more than the stream keeps: say so.
            parts.append(None)
            state.after_gap = True
        for entry_id, fields in entries:
            if GAP in fields:
                if not state.after_gap:
                    parts.append(None)
                state.after_gap = True
            else:
                parts.append(framed(entry_id, fields[DATA]))
                state.after_gap = False
        state.last_id = entries[-1][0]
        if parts:
            self._fan_out(state, parts)

    def _trimmed_past(self, key: str, last_id: bytes | None) -> bool:
        """Whether trimming may have removed entries after *last_id* before we read them.

        Asked only when a read brought about ``history`` entries or more (trimming keeps
        at least that many, so a smaller read cannot follow a loss): if the entry we read
        last is gone, so may be some after it. Conservative: a reader that far behind
        tells its listeners to reload.
        """
        if last_id is None or last_id == b"0-0":
            return False
        return not self._reader.xrange(key, last_id, last_id, count=1)

    def _fan_out(self, state: _Key, parts: list[bytes | None]) -> None:
        for channel in list(state.channels):
            if None in parts:
                notice = channel.gap_notice("lost")
                channel._fan_out(b"".join(notice if part is None else part for part in parts))
            else:
                channel._fan_out(b"".join(cast(list[bytes], parts)))

    def _resync(self) -> None:
        """After a reconnect: notice entries Redis lost while we were away."""
        reader = self._reader
        for key, state in list(self._keys.items()):
            last = state.last_id
            if last is None or last == b"0-0" or reader.xrange(key, last, last, count=1):
                continue
            top = reader.xrevrange(key, "+", "-", count=1)
            if not top or cast(StreamId, parse_id(top[0][0])) < cast(StreamId, parse_id(last)):
                # The stream restarted below our position: continue it after us, marked,
                # so ids never go backwards and replays show the gap too.
                try:
                    reader.xadd(key, {GAP: b""}, id=successor(last), maxlen=state.maxlen, approximate=True)
                    continue
                except redis.ResponseError:
                    pass  # someone else continued it already
            if not state.after_gap:
                state.after_gap = True
                self._fan_out(state, [None])
