"""One running Server-Sent Events stream on the native server: watch, heartbeat, end.

Strategy: the handler returned with a stream callback and the head is on the wire; the
callback runs in its own greenlet (``spawn_stream``) with an ``SSEWriter`` whose transport
is this ``Stream``. The connection's greenlet stays behind, parked in ``recv`` (``watch``),
for three reasons: it notices at once when the client leaves (EOF or reset, and then kills
the callback greenlet); it sends heartbeat comments when the stream has been idle (its
``recv`` timeout is the heartbeat timer, so no extra greenlet or timer lives per stream);
and it keeps the connection counted until the stream ends, so streams obey
``max_connections`` and graceful shutdown like any request. When the stream ends from the
other side (callback returned, writer closed, shutdown), ``wake`` throws
``StreamDoneError`` into the parked greenlet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gevent
import gevent.lock

from ._wire import RECV_SIZE, send_all
from .errors import BackpressureDetected, ConnectionLost, SSEError
from .sse import SSEWriter, spawn_stream, stop_stream

if TYPE_CHECKING:
    from ._connection import Connection
    from .event import H3Event
    from .response import SSEResponse

__all__ = ["Stream", "StreamDoneError"]


class StreamDoneError(Exception):
    """Thrown into a connection greenlet parked in ``recv`` when its stream has ended."""


class Stream:
    """An SSE stream owned by its connection; also its writer's way to the socket."""

    __slots__ = ("_conn", "_lock", "_parked", "_shutdown", "_wake_pending", "greenlet", "writer")

    def __init__(self, conn: Connection, event: H3Event) -> None:
        self._conn = conn
        # Heartbeats come from the connection greenlet, events from the callback's: the
        # lock keeps their writes from interleaving on the socket.
        self._lock = gevent.lock.Semaphore()
        self._parked = False
        self._wake_pending = False
        self._shutdown = False
        self.greenlet: gevent.Greenlet | None = None
        self.writer = SSEWriter(self, event)

    # -- the writer's transport ----------------------------------------------------------

    def send(self, payload: bytes) -> None:
        conn = self._conn
        timeout = conn.config.sse_send_timeout or None
        if not self._lock.acquire(timeout=timeout):
            self._drop()
            raise BackpressureDetected("the client is not reading; the stream was dropped")
        try:
            if conn.closed:
                raise ConnectionLost("the client disconnected")
            data = conn.driver.body(payload)
            sock = conn.sock
            sock.settimeout(timeout)
            send_all(sock, data)
        except TimeoutError:
            self._drop()
            raise BackpressureDetected(
                f"the client read nothing for {timeout} s; the stream was dropped"
            ) from None
        except OSError:
            conn.abort()
            raise ConnectionLost("the client disconnected") from None
        finally:
            self._lock.release()

    def finish(self) -> None:
        conn = self._conn
        try:
            if not conn.closed:
                with self._lock:
                    conn.sock.settimeout(conn.config.sse_send_timeout or None)
                    conn.sock.sendall(conn.driver.end())
        except OSError:
            conn.abort()
        finally:
            self.wake()

    def abort(self) -> None:
        # Closing the socket also fails any write blocked on it, in whichever greenlet.
        self._conn.abort()

    def _drop(self) -> None:
        # Through the writer, so that it (and every later write) says BackpressureDetected
        # rather than ConnectionLost; the writer calls abort() back.
        self.writer.drop()
        self._conn.abort()

    # -- running -------------------------------------------------------------------------

    def run(self, response: SSEResponse, method: str) -> None:
        """Run the callback and watch the socket until the stream ends."""
        writer = self.writer
        try:
            if response.callback is None or method == "HEAD":
                writer.close()
            else:
                greenlet = self.greenlet = spawn_stream(response.callback, writer)
                # PERF: a bound method, not a lambda: no closure kept per stream.
                greenlet.rawlink(self._ended)
                heartbeat = response.heartbeat
                self._watch(self._conn.config.sse_heartbeat if heartbeat is None else heartbeat)
        except BaseException:
            # Cut from outside (shutdown deadline passed): drop the socket first, so the
            # callback's cleanup cannot block on a client that does not read.
            self._conn.abort()
            raise
        finally:
            stop_stream(self.greenlet)
            writer.close()
            self.greenlet = None

    def _watch(self, heartbeat: float) -> None:
        """Park in ``recv`` while the callback streams: EOF, heartbeat, or a wake-up."""
        conn = self._conn
        driver = conn.driver
        sock = conn.sock
        writer = self.writer
        greenlet = self.greenlet
        assert greenlet is not None
        while writer.is_active and not greenlet.dead and not conn.closed:
            if self._shutdown:
                self._send_shutdown_event()
                return
            self._parked = True
            try:
                sock.settimeout(writer.heartbeat_wait(heartbeat))
                data: bytes | None = sock.recv(RECV_SIZE)
            except StreamDoneError:
                continue
            except TimeoutError:
                data = None
            except OSError:
                data = b""
            finally:
                # Cleared before anything else can switch: a wake-up must only ever land
                # in the recv above, never in the heartbeat's write below.
                self._parked = False
            if data is None:
                if writer.heartbeat_wait(heartbeat) == 0:
                    try:
                        writer.send_comment("")
                    except SSEError:
                        return
                continue
            if not data:
                # EOF or reset: the hooks run and the socket closes now; the callback
                # greenlet is killed next, as run() ends.
                conn.close()
                return
            # The client may pipeline its next request; keep it, within the head limit.
            driver.receive_data(data)
            if len(driver.trailing_data[0]) > conn.config.max_header_bytes:
                conn.abort()
                return

    def _ended(self, _greenlet: object) -> None:
        self.wake()

    def wake(self) -> None:
        """Get the connection greenlet out of its ``recv`` (the stream has ended)."""
        if self._parked and not self._wake_pending:
            self._wake_pending = True
            gevent.get_hub().loop.run_callback(self._throw_done)

    def _throw_done(self) -> None:
        self._wake_pending = False
        greenlet = self._conn.greenlet
        if self._parked and greenlet is not None:
            greenlet.throw(StreamDoneError)

    # -- graceful shutdown ---------------------------------------------------------------

    def shutdown(self) -> None:
        """Ask the stream to send its final event and close (graceful shutdown).

        Never blocks: the connection's own greenlet does the sending, so one client that
        does not read cannot hold up the shutdown of the others.
        """
        self._shutdown = True
        self.wake()

    def _send_shutdown_event(self) -> None:
        writer = self.writer
        final = self._conn.config.sse_shutdown_event
        if final:
            try:
                writer.send_raw(final)
            except SSEError:
                return
        # No switch between the final event and this: nothing the callback sends can
        # follow it; its later writes raise ConnectionLost.
        writer.shutdown()
