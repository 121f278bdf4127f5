"""Server-Sent Events: encoding (pure), the ``SSEWriter`` a stream callback gets, and
``EventStream`` for handlers that prefer returning an iterable of events.

Strategy (H3Z's mechanism, on gevent): the handler calls ``event.start_sse()`` and
``event.set_stream_callback(fn)`` and returns. The server writes the response head, wraps
the connection in a ``StreamTransport``, builds an ``SSEWriter`` on it and runs
``gevent.spawn_later(0, fn, writer)`` -- on the next loop tick, in its own greenlet, with
the request's context variables copied in. That is the stream's only greenlet: the
server watches the socket from the hub (``_stream``), so a client that leaves is noticed
at once: the writer turns inactive, the callback greenlet is killed and its cleanup and
the ``on_close`` hooks run. When the callback returns, h3green closes the writer for it,
so no stream outlives its code.

Encoding follows the WHATWG HTML "Server-sent events" section (9.2): every line of data
becomes its own ``data: `` field (a single space after the colon, which parsers strip),
lines are split on CR, LF and CRLF, an event ends with a blank line, and no BOM is sent.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol

import gevent

from ._json import json_dumps
from .errors import BackpressureDetected, ConnectionLost, SSEError, WriterClosed

if TYPE_CHECKING:
    from types import TracebackType

    from .event import H3Event

__all__ = [
    "EventStream",
    "SSEEvent",
    "SSEWriter",
    "StreamTransport",
    "encode_comment",
    "encode_event",
    "spawn_stream",
    "stop_stream",
]

logger = logging.getLogger("h3green")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _data_text(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("SSE data bytes must be valid UTF-8") from None
    try:
        return json_dumps(data).decode()
    except TypeError:
        raise ValueError(f"SSE data of type {type(data).__name__} is not JSON-serialisable") from None


def encode_event(
    data: Any,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """One event in wire format.

    ``data`` is ``str``, UTF-8 ``bytes`` or a JSON-able value. ``event`` and ``id`` may not
    contain CR or LF (they would end the field early), ``id`` may not contain NUL (parsers
    ignore such ids), ``retry`` must be an int >= 0 (milliseconds): otherwise ``ValueError``.
    An empty ``id`` resets the client's last event id.
    """
    parts = []
    if event is not None:
        if "\r" in event or "\n" in event:
            raise ValueError(f"SSE event name may not contain CR or LF: {event!r}")
        parts.append(f"event: {event}\n")
    if id is not None:
        if "\r" in id or "\n" in id or "\x00" in id:
            raise ValueError(f"SSE id may not contain CR, LF or NUL: {id!r}")
        parts.append(f"id: {id}\n")
    if retry is not None:
        if type(retry) is not int or retry < 0:
            raise ValueError(f"SSE retry must be a non-negative int (milliseconds), got {retry!r}")
        parts.append(f"retry: {retry}\n")
    text = _data_text(data)
    if "\n" in text or "\r" in text:
        for line in _LINE_BREAK.split(text):
            parts.append(f"data: {line}\n")
    else:
        parts.append(f"data: {text}\n")
    parts.append("\n")
    return "".join(parts).encode()


def encode_comment(text: str = "") -> bytes:
    """A comment (``: text``), one line per line of *text*; clients ignore it."""
    return "".join(f": {line}\n" for line in _LINE_BREAK.split(text)).encode()


class SSEEvent:
    """An event with fields, for ``EventStream`` iterables and channels."""

    __slots__ = ("data", "event", "id", "retry")

    def __init__(
        self,
        data: Any,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
    ) -> None:
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    def encode(self) -> bytes:
        return encode_event(self.data, event=self.event, id=self.id, retry=self.retry)

    def __repr__(self) -> str:
        return f"SSEEvent({self.data!r}, event={self.event!r}, id={self.id!r})"


class StreamTransport(Protocol):
    """How a writer reaches its client (the server's connection, the WSGI adapter...)."""

    def send(self, payload: bytes) -> None:
        """Write *payload*, at the latest when the caller next yields to the hub; raise
        ``ConnectionLost`` or ``BackpressureDetected``."""

    def finish(self) -> None:
        """End the response body cleanly (the chunked terminator)."""

    # Optional: ``abort()`` drops the connection at once without waiting for the client
    # (never blocks); ``SSEWriter.drop`` uses it when the transport has one.


_OPEN, _CLOSED, _LOST, _BACKPRESSURE, _SHUTDOWN = range(5)
_STATE_ERRORS: dict[int, tuple[type[SSEError], str]] = {
    _CLOSED: (WriterClosed, "the SSE writer is closed"),
    _LOST: (ConnectionLost, "the client disconnected"),
    _BACKPRESSURE: (BackpressureDetected, "the client stopped reading and was dropped"),
    _SHUTDOWN: (ConnectionLost, "the server is shutting down"),
}


class SSEWriter:
    """What a stream callback gets: send events until the stream ends.

    Use it as a context manager to close it at the end of the block; h3green also closes
    it when the callback returns.
    """

    __slots__ = (
        "_close_hooks",
        "_state",
        "_transport",
        "event",
        "event_count",
        "last_activity",
        "last_event_id",
    )

    def __init__(self, transport: StreamTransport, event: H3Event) -> None:
        self._transport = transport
        self._state = _OPEN
        self._close_hooks: list[Callable[[], object]] = []
        #: The request this stream answers (params, query, headers...).
        self.event = event
        #: The ``Last-Event-ID`` the client sent when it (re)connected, or None.
        self.last_event_id: str | None = event.headers.get("last-event-id")
        #: Events sent so far (comments not counted).
        self.event_count = 0
        #: ``time.monotonic()`` of the last write, for heartbeats.
        self.last_activity = time.monotonic()

    def heartbeat_wait(self, heartbeat: float) -> float | None:
        """Seconds until a heartbeat comment is due after *heartbeat* idle seconds:
        0 when one is due now, None when *heartbeat* is not positive (never)."""
        if heartbeat <= 0:
            return None
        return max(0.0, self.last_activity + heartbeat - time.monotonic())

    def __repr__(self) -> str:
        return f"<SSEWriter {self.event.target} events={self.event_count} active={self.is_active}>"

    @property
    def is_active(self) -> bool:
        return self._state == _OPEN

    def _raise_if_ended(self) -> None:
        if self._state != _OPEN:
            cls, message = _STATE_ERRORS[self._state]
            raise cls(message)

    def send_raw(self, payload: bytes) -> None:
        """Write already-encoded event bytes (what channels use to encode once)."""
        self._raise_if_ended()
        try:
            self._transport.send(payload)
        except ConnectionLost:
            if self._state != _OPEN:
                # Dropped (slow reader) or shut down while this write waited: say why.
                self._raise_if_ended()
            self._end(_LOST)
            raise
        except BackpressureDetected:
            self._end(_BACKPRESSURE)
            raise
        self.last_activity = time.monotonic()

    def send_event(
        self,
        data: Any,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
    ) -> None:
        """Encode and send one event (see ``encode_event`` for the rules).

        On h3green's server the event is on its way by the time the callback next yields
        (sleeps, waits, returns): events sent in a burst leave together, in order."""
        payload = encode_event(data, event=event, id=id, retry=retry)
        self.send_raw(payload)
        self.event_count += 1

    def send_comment(self, text: str = "") -> None:
        """Send a comment line (keeps proxies from timing the stream out)."""
        self.send_raw(encode_comment(text))

    def on_close(self, callback: Callable[[], object]) -> None:
        """Run *callback* once when the stream ends, however it ends."""
        if self._state != _OPEN:
            _call_hook(callback)
        else:
            self._close_hooks.append(callback)

    def close(self) -> None:
        """End the stream (idempotent): the body is terminated and the hooks run."""
        self._finish(_CLOSED)

    def _finish(self, state: int) -> None:
        if self._state != _OPEN:
            # Hooks a drop left pending run here, in the stream's own greenlets.
            self._run_hooks()
            return
        self._state = state
        try:
            self._transport.finish()
        except SSEError:
            pass
        self._run_hooks()

    def _end(self, state: int) -> None:
        """The stream ended from outside (client left, slow reader, shutdown)."""
        if self._state == _OPEN:
            self._state = state
            self._run_hooks()

    def connection_lost(self, *, defer_hooks: bool = False) -> None:
        """Mark the client as gone (called by the server).

        With *defer_hooks* the ``on_close`` hooks do not run here (the caller may be the
        hub, which must not block) but when the stream's greenlet closes the writer.
        """
        if defer_hooks:
            if self._state == _OPEN:
                self._state = _LOST
        else:
            self._end(_LOST)

    def shutdown(self) -> None:
        """End the stream because the server stops (called by the server, after the final
        event): the body is terminated, and later writes raise ``ConnectionLost``.

        Never blocks: the hooks run when the stream's greenlet closes the writer."""
        if self._state == _OPEN:
            self._state = _SHUTDOWN
            try:
                self._transport.finish()
            except SSEError:  # pragma: no cover - the server's transport does not raise
                pass

    def drop(self) -> None:
        """Drop a client too slow to keep up (called by publishers that cannot wait).

        Never blocks: the connection is cut, writes raise ``BackpressureDetected`` from now
        on, and the ``on_close`` hooks run later in the stream's own greenlets, not in the
        caller's.
        """
        if self._state == _OPEN:
            self._state = _BACKPRESSURE
            abort = getattr(self._transport, "abort", None)
            if abort is not None:
                abort()

    def _run_hooks(self) -> None:
        hooks, self._close_hooks = self._close_hooks, []
        for hook in hooks:
            _call_hook(hook)

    def __enter__(self) -> SSEWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _call_hook(hook: Callable[[], object]) -> None:
    try:
        hook()
    except Exception:
        logger.exception("SSE on_close hook %r failed", hook)


class EventStream:
    """Return one from a handler to stream the events an iterable yields.

    Items may be ``SSEEvent`` objects, or plain data (str, bytes, JSON-able values). The
    iterable runs in the stream's own greenlet, so a generator may block (``time.sleep``
    under monkey patching) without stalling other clients.
    """

    __slots__ = ("events",)

    def __init__(self, events: Iterable[Any]) -> None:
        self.events = events

    def run(self, writer: SSEWriter) -> None:
        events = self.events
        try:
            for item in events:
                if isinstance(item, SSEEvent):
                    writer.send_event(item.data, event=item.event, id=item.id, retry=item.retry)
                else:
                    writer.send_event(item)
        finally:
            # A generator's own cleanup (finally, with) runs now, not whenever it is
            # collected: the client left, or the stream was cut.
            close = getattr(events, "close", None)
            if close is not None:
                close()


def _run_callback(callback: Callable[[SSEWriter], object], writer: SSEWriter) -> bool:
    """Run the callback; True when it raised (logged here, with its traceback)."""
    # One check per stream, not per event: streams are long-lived.
    debug = logger.isEnabledFor(logging.DEBUG)
    if debug:
        logger.debug("stream %s %s opened", writer.event.method, writer.event.target)
    raised = False
    try:
        callback(writer)
    except SSEError as exc:
        if writer.is_active:
            raised = True
            logger.exception("SSE stream callback %r failed", callback)
        else:
            # The client left or was dropped: the callback's write noticed. Not a bug.
            logger.debug("SSE stream ended: %s", exc)
    except Exception:
        raised = True
        logger.exception("SSE stream callback %r failed", callback)
    finally:
        writer.close()
        if debug:
            logger.debug(
                "stream %s %s closed after %d event(s)",
                writer.event.method,
                writer.event.target,
                writer.event_count,
            )
    return raised


class _StreamGreenlet(gevent.Greenlet):  # type: ignore[misc]
    # PERF: gevent records the frames that spawned each greenlet (for its debug dumps);
    # a stream callback is always spawned by the server: ~0.2 KiB saved per stream.
    spawning_stack_limit = 0


def spawn_stream(callback: Callable[[SSEWriter], object], writer: SSEWriter) -> gevent.Greenlet:
    """Run ``callback(writer)`` on the next loop tick in a greenlet of its own.

    The request's context variables are copied in; an exception in the callback is logged
    and ends the stream cleanly without touching other clients.
    """
    greenlet: gevent.Greenlet = _StreamGreenlet.spawn_later(0, _run_callback, callback, writer)
    # PERF: the copied context rides on the greenlet (it starts on the next tick) rather
    # than through Context.run: one C call less on the stack a parked callback keeps and
    # no bound method held, ~0.2 KiB a stream.
    greenlet.gr_context = contextvars.copy_context()
    return greenlet


#: Seconds a stream callback that is being ended gets for its cleanup.
STOP_TIMEOUT: Final = 1.0


def stop_stream(greenlet: gevent.Greenlet | None) -> None:
    """End a stream callback's greenlet unless it already ended.

    ``GreenletExit`` runs the callback's ``finally``/``with`` blocks now, even mid-sleep;
    a cleanup that outlasts ``STOP_TIMEOUT`` is left behind rather than waited for.
    """
    if greenlet is not None and not greenlet.dead:
        greenlet.kill(block=True, timeout=STOP_TIMEOUT)


def __getattr__(name: str) -> Any:
    # ``h3green.sse.Channel`` (and its history types) stay importable from here, where they
    # were first documented; they live in ``h3green.channel``, which imports this module.
    if name in ("Channel", "History", "MemoryBackend", "MemoryHistory"):
        from . import channel

        return getattr(channel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
