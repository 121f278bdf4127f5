"""One running Server-Sent Events stream on the native server: watch, write, beat, end.

Strategy: one greenlet per stream, the callback's. Once the response head is on the
wire, the connection's greenlet hands the socket to a ``Stream`` and ends; the stream
takes its place in the server's registry (so it counts against ``max_connections`` and
graceful shutdown finds it) and lives on callbacks of the hub, not on a greenlet stack:

* **watch**: an I/O watcher of the hub reports the socket readable. A non-blocking
  ``recv`` then tells EOF or reset (the client left: the writer turns inactive, the
  callback greenlet is killed without blocking the hub, its ``finally``/``with`` and
  then the ``on_close`` hooks run in it) from bytes of a pipelined next request (kept,
  within ``max_header_bytes``, for the connection that follows the stream).
* **write**: the writer's sends queue their payloads; one flush per turn of the hub
  (``loop.run_callback``) frames what piled up as one chunk and makes one non-blocking
  ``send``; what the kernel does not take waits for a write watcher. A writer whose
  queue passes ``_MAX_PENDING`` bytes blocks in its own greenlet until the queue drains,
  for at most ``sse_send_timeout``: then the client is dropped as too slow.
* **heartbeat**: one timer for the whole process (``_heartbeat``) calls ``heartbeat``
  on due streams, which writes the comment with a non-blocking ``send`` right there.
* **end**: when the callback greenlet ends (``rawlink``) and the terminator is out, the
  stream is logged and either closes or, when the connection may be reused, hands the
  socket and the buffered bytes to a new connection greenlet with a fresh parser.

Nothing a running stream does not need is kept: the connection object, its parser and
the request head go with the connection greenlet.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

import gevent
import gevent.event

from ._heartbeat import heartbeats
from ._listener import ConnectionGreenlet
from ._wire import RECV_SIZE
from .errors import BackpressureDetected, ConnectionLost
from .sse import SSEWriter, encode_comment, spawn_stream

if TYPE_CHECKING:
    from ._h1 import Driver
    from .app import H3
    from .config import Config
    from .event import H3Event, StreamCallback

__all__ = ["Stream"]

access_logger = logging.getLogger("h3green.access")

#: Queued bytes past which a writer waits for the client to catch up.
_MAX_PENDING: Final = 65536

# Why a stream ended (its access line says it).
CLIENT_LEFT: Final = "client left"
CLIENT_OVERFLOW: Final = "client sent too much"
FINISHED: Final = "callback finished"
RAISED: Final = "callback raised"
DROPPED: Final = "dropped as slow"
SHUTDOWN: Final = "server shutdown"

_HEARTBEAT: Final = encode_comment("")
_CHUNKED_HEARTBEAT: Final = b"%x\r\n%s\r\n" % (len(_HEARTBEAT), _HEARTBEAT)
_TERMINATOR: Final = b"0\r\n\r\n"

# ``_terminate`` states: the body's end is not asked for, asked for, queued on the wire.
_RUNNING, _END_ASKED, _END_QUEUED = range(3)


def _watch_readable(sock: Any, callback: Any) -> Any:
    """Start an I/O watcher of the hub calling *callback* whenever *sock* is readable."""
    watch = getattr(sock, "watch_readable", None)
    if watch is not None:  # the in-memory socket of h3green.testing
        return watch(callback)
    # PERF: a libev watcher costs ~100 bytes; a greenlet parked in recv cost KiBs of stack.
    io = gevent.get_hub().loop.io(sock.fileno(), 1)
    io.start(callback)
    return io


class Stream:
    """A running SSE stream: owns the socket from the head until the body's end."""

    __slots__ = (
        "_addr",
        "_app",
        "_chunked",
        "_config",
        "_drained",
        "_driver",
        "_finalized",
        "_gone",
        "_inbox",
        "_interval",
        "_pending",
        "_pending_len",
        "_reader",
        "_reason",
        "_registry",
        "_rest",
        "_reusable",
        "_scheduled",
        "_sent",
        "_sock",
        "_started",
        "_status",
        "_stuck_since",
        "_terminate",
        "_timer",
        "_writable",
        "greenlet",
        "heartbeat_key",
        "writer",
    )

    def __init__(  # noqa: PLR0913 - what the connection hands over: its socket, app, config and head
        self,
        sock: Any,
        addr: Any,
        app: H3,
        config: Config,
        registry: Any,
        *,
        event: H3Event,
        status: int,
        chunked: bool,
        reusable: bool,
        driver: Driver | None = None,
    ) -> None:
        self._sock = sock
        self._addr = addr
        self._app = app
        self._config = config
        self._registry = registry
        self._status = status
        self._chunked = chunked
        #: The connection may carry another request once the body ended cleanly.
        self._reusable = reusable
        #: The parser, kept only when it already holds (part of) the next request.
        self._driver = driver
        self._started = time.monotonic()
        self._reason: str | None = None
        self._inbox = b""
        self._rest = b""  # framed bytes the kernel has not taken yet
        self._pending: list[bytes] = []  # payloads not framed yet
        self._pending_len = 0
        self._sent = 0  # payload bytes queued (events and comments)
        self._terminate = _RUNNING
        self._scheduled = False
        self._writable: Any = None
        self._stuck_since = 0.0
        self._drained: gevent.event.Event | None = None
        self._reader: Any = None
        self._timer: Any = None
        self._interval = 0.0
        self.heartbeat_key = 0
        self._gone = False
        self._finalized = False
        self.greenlet: gevent.Greenlet | None = None
        self.writer = SSEWriter(self, event)

    # -- starting ------------------------------------------------------------------------

    def start(self, callback: StreamCallback, heartbeat: float) -> None:
        """Run *callback* in its own greenlet and watch the socket from the hub."""
        self._sock.settimeout(0.0)  # every read and write of a stream is non-blocking
        greenlet = self.greenlet = spawn_stream(callback, self.writer)
        # PERF: a bound method, not a lambda: no closure kept per stream.
        greenlet.rawlink(self._callback_ended)
        self._reader = _watch_readable(self._sock, self._readable)
        if heartbeat > 0:
            self._interval = heartbeat
            heartbeats().add(self, self._started + heartbeat)
        registry = self._registry
        if registry is not None and registry.closing:
            self.shutdown()  # started while the server stops: end at once

    # -- reading: EOF, reset, or the client's next request --------------------------------

    def _readable(self) -> None:
        try:
            data = self._sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lose(CLIENT_LEFT)
            return
        inbox = self._inbox = self._inbox + data
        if len(inbox) > self._config.max_header_bytes:
            self._lose(CLIENT_OVERFLOW)

    # -- writing (the writer's transport) -------------------------------------------------

    def send(self, payload: bytes) -> None:
        if self._gone:
            raise ConnectionLost("the client disconnected")
        self._pending.append(payload)
        self._pending_len += len(payload)
        self._sent += len(payload)
        self._schedule()
        if self._pending_len + len(self._rest) > _MAX_PENDING:
            self._wait_drained()

    def _schedule(self) -> None:
        if self._scheduled:
            return
        writable = self._writable
        if writable is not None and writable.active:
            return  # the write watcher flushes when the kernel takes more
        self._scheduled = True
        # PERF: events a callback sends without yielding go out in one send, when the
        # hub next runs: nothing waits past the next switch.
        gevent.get_hub().loop.run_callback(self._flush)

    def _wait_drained(self) -> None:
        timeout = self._config.sse_send_timeout or None
        drained = self._drained
        if drained is None:
            drained = self._drained = gevent.event.Event()
        if not drained.wait(timeout):
            self.writer.drop()  # calls abort(): the stream ends as dropped
            raise BackpressureDetected(f"the client read nothing for {timeout} s; the stream was dropped")
        if self._gone:
            raise ConnectionLost("the client disconnected")

    def _flush(self) -> None:
        self._scheduled = False
        if self._gone:
            return
        data = self._rest
        pending = self._pending
        if pending:
            body = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            self._pending_len = 0
            data += b"%x\r\n%s\r\n" % (len(body), body) if self._chunked else body
        if self._terminate == _END_ASKED:
            self._terminate = _END_QUEUED
            if self._chunked:
                data += _TERMINATOR
        if data:
            try:
                sent = self._sock.send(data, 0, 0.0)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._lose(CLIENT_LEFT)
                return
            if sent < len(data):
                self._rest = data[sent:]
                self._wait_writable(progress=sent > 0)
                return
            self._rest = b""
        self._all_sent()

    def _wait_writable(self, progress: bool) -> None:
        writable = self._writable
        if writable is None:
            writable = self._writable = gevent.get_hub().loop.io(self._sock.fileno(), 2)
        if progress or not writable.active:
            self._stuck_since = time.monotonic()
        if not writable.active:
            writable.start(self._flush)

    def _all_sent(self) -> None:
        writable = self._writable
        if writable is not None and writable.active:
            writable.stop()
        drained = self._drained
        if drained is not None:
            self._drained = None
            drained.set()
        if self._terminate == _END_QUEUED and self.greenlet is None:
            self._finalize()

    def finish(self) -> None:
        """The writer closed: end the body after what is queued; stop the callback."""
        if self._gone or self._terminate != _RUNNING:
            return
        self._terminate = _END_ASKED
        self._schedule()
        self._stop_callback()

    def abort(self) -> None:
        """The writer was dropped (too slow a reader): cut the connection, never blocking."""
        self._lose(DROPPED)

    # -- heartbeats (called by the process's heartbeat timer) ------------------------------

    def heartbeat(self, now: float) -> float:
        writer = self.writer
        if self._gone or not writer.is_active:
            return 0.0
        due = writer.last_activity + self._interval
        if due > now:
            return due  # it wrote since: next due time, bucketed anew
        if self._rest or self._pending:
            # Something is on its way already; a stuck one is a slow reader.
            timeout = self._config.sse_send_timeout
            if self._rest and timeout and now - self._stuck_since > timeout:
                writer.drop()
                return 0.0
            return now + self._interval
        # PERF: the comment goes out from the timer's callback with one non-blocking send:
        # no greenlet switch, no queue. What the kernel does not take waits as any write.
        data = _CHUNKED_HEARTBEAT if self._chunked else _HEARTBEAT
        try:
            sent = self._sock.send(data, 0, 0.0)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._lose(CLIENT_LEFT)
            return 0.0
        self._sent += len(_HEARTBEAT)
        if sent < len(data):
            self._rest = data[sent:]
            self._wait_writable(progress=True)
        writer.last_activity = now
        return now + self._interval

    # -- ending ----------------------------------------------------------------------------

    def _end_reason(self, reason: str) -> None:
        if self._reason is None:
            self._reason = reason

    def _lose(self, reason: str) -> None:
        """The connection is unusable (client left, reset, slow reader): drop it now.

        Runs in the hub or in any greenlet, and never blocks: the callback greenlet is
        killed without waiting; its cleanup and the ``on_close`` hooks run in it.
        """
        if self._gone:
            return
        self._gone = True
        self._end_reason(reason)
        self._pending.clear()
        self._pending_len = 0
        self._rest = b""
        self._stop_watchers()
        self.writer.connection_lost(defer_hooks=True)
        drained = self._drained
        if drained is not None:
            self._drained = None
            drained.set()
        greenlet = self.greenlet
        if greenlet is not None and not greenlet.dead:
            self._stop_callback()
        else:
            self._finalize()

    def _stop_callback(self) -> None:
        """The stream is over: kill its callback greenlet unless it ends by itself first."""
        greenlet = self.greenlet
        if greenlet is not None and not greenlet.dead:
            # One turn of the hub later, from the hub: the greenlet may be the caller, and
            # a wake-up the caller schedules next (a channel dropping its subscriber wakes
            # it to raise BackpressureDetected) goes first.
            gevent.get_hub().loop.run_callback(self._kill_callback)

    def _kill_callback(self) -> None:
        greenlet = self.greenlet
        if greenlet is not None:
            greenlet.kill(block=False)  # never waits: its cleanup runs in it

    def _callback_ended(self, greenlet: Any) -> None:
        self.greenlet = None
        if greenlet.value is True:
            self._end_reason(RAISED)
        # A callback killed before it ever ran did not close its writer.
        self.writer.close()
        self._end_reason(FINISHED)
        if self._gone or (self._terminate == _END_QUEUED and not self._rest):
            self._finalize()

    def _stop_watchers(self) -> None:
        for name in ("_reader", "_writable", "_timer"):
            watcher = getattr(self, name)
            if watcher is not None:
                setattr(self, name, None)
                watcher.close()

    def _finalize(self) -> None:
        """The callback ended and the body is out (or the connection is lost): log, then
        close the socket or hand it to a new connection greenlet."""
        if self._finalized:
            return
        self._finalized = True
        self._stop_watchers()
        if self._interval:
            heartbeats().remove(self)
        self._log_end()
        registry = self._registry
        sock = self._sock
        if (
            not self._gone
            and self._reusable
            and self._reason in (FINISHED, RAISED)
            and not (registry is not None and registry.closing)
        ):
            from ._connection import Connection  # the request loop imports this module

            conn = Connection(sock, self._addr, self._app, self._config, registry)
            conn.served = True  # it carried this stream's request: idle between requests
            driver = self._driver
            if driver is not None:
                driver.start_next_cycle()
                conn.driver = driver
            if self._inbox:
                conn.driver.receive_data(self._inbox)
            if registry is not None:
                registry.add(conn)  # before this stream leaves: never an empty registry
            conn.greenlet = ConnectionGreenlet.spawn(conn.run)
        else:
            try:
                sock.close()
            except OSError:  # pragma: no cover
                pass
        if registry is not None:
            registry.discard(self)

    def _log_end(self) -> None:
        if self._config.access_log and access_logger.isEnabledFor(logging.INFO):
            event = self.writer.event
            access_logger.info(
                '%s - "%s %s HTTP/%s" %d %d stream ended: %s after %.3f s, %d event(s)',
                self._addr[0] if self._addr else "-",
                event.method,
                event.target,
                event.http_version,
                self._status,
                self._sent,
                self._reason,
                time.monotonic() - self._started,
                self.writer.event_count,
            )

    # -- graceful shutdown ---------------------------------------------------------------

    def shutdown(self) -> None:
        """Send the final event, end the body and stop the callback (graceful shutdown).

        Never blocks: the final event is queued behind what is already queued (however
        much that is), the callback is killed without waiting, and a client that takes
        none of it within ``sse_send_timeout`` is cut.
        """
        writer = self.writer
        if self._gone or not writer.is_active:
            return
        self._end_reason(SHUTDOWN)
        final = self._config.sse_shutdown_event
        if final:
            self._pending.append(final)
            self._pending_len += len(final)
            self._sent += len(final)
        # Nothing the callback sends from now on can follow the final event: its later
        # writes raise ConnectionLost.
        writer.shutdown()  # calls finish(): the terminator, and the callback is killed
        timeout = self._config.sse_send_timeout
        if timeout and not self._finalized:
            timer = self._timer = gevent.get_hub().loop.timer(timeout)
            timer.start(self._lose, SHUTDOWN)

    def cut(self) -> None:
        """The shutdown deadline passed: close now, whatever the callback is doing."""
        self._lose(SHUTDOWN)
        self._finalize()
