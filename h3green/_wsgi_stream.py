"""An event stream through WSGI: the response body drains a queue the stream callback fills.

Strategy: the response body (``SSEIterable``) is an iterable that drains a bounded
``gevent.queue.Queue`` (``QueueTransport``). The stream callback still runs in its own greenlet
(``spawn_stream``, ``gevent.spawn_later(0)``) on an ``SSEWriter`` whose transport puts
encoded events into that queue; a queue that stays full for ``sse_send_timeout`` means
the client stopped reading (``BackpressureDetected``). While the queue is idle the
iterable yields heartbeat comments, which is also how a WSGI server finds out that the
client left: its write fails and it calls ``close()``, which ends the writer (``on_close``
runs) and kills the callback greenlet.

Without gevent (wsgiref, a thread per request): it still works. Every OS thread has its
own gevent hub, and the thread serving the stream runs that hub whenever it waits on the
queue, so the callback greenlet runs in the same thread and nothing is shared between
threads. The price is one server thread per open stream, and a blocking call in the
callback (an unpatched ``time.sleep``) holds up that stream's thread, no other. gevent
objects shared between streams (a ``Channel``) belong to one hub: they need a gevent server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import gevent
import gevent.queue
from gevent._hub_local import get_hub_if_exists

from .errors import BackpressureDetected, ConnectionLost
from .sse import SSEWriter, encode_comment, spawn_stream, stop_stream

if TYPE_CHECKING:
    from .event import H3Event

__all__ = ["QueueTransport", "SSEIterable"]

END: Final = b""  # queue sentinel (events are never empty)


class QueueTransport:
    """An ``SSEWriter``'s way to the WSGI server: a bounded queue the response iterable drains."""

    __slots__ = ("aborted", "closed", "finished", "queue", "timeout")

    def __init__(self, size: int, timeout: float) -> None:
        self.queue: gevent.queue.Queue[bytes] = gevent.queue.Queue(size)
        self.timeout = timeout or None
        self.closed = False
        self.finished = False
        self.aborted = False

    def send(self, payload: bytes) -> None:
        if self.closed:
            raise ConnectionLost("the client disconnected")
        try:
            self.queue.put(payload, timeout=self.timeout)
        except gevent.queue.Full:
            self.closed = self.finished = True
            raise BackpressureDetected(
                f"the WSGI server took no event for {self.timeout} s; the stream was dropped"
            ) from None

    def finish(self) -> None:
        self.finished = True
        try:
            self.queue.put_nowait(END)
        except gevent.queue.Full:
            pass  # the iterable sees ``finished`` once it has drained the queue

    def abort(self) -> None:
        """The writer was dropped (``SSEWriter.drop``): end the body now, never blocking.

        Events still queued are discarded; the client reconnects with its Last-Event-ID.
        """
        self.closed = self.aborted = True
        self.finish()


class SSEIterable:
    """The WSGI response body of an event stream."""

    __slots__ = ("_closed", "_greenlet", "_heartbeat", "_opened", "_own_hub", "_transport", "_writer")

    def __init__(
        self,
        event: H3Event,
        callback: Callable[[SSEWriter], object],
        *,
        queue_size: int,
        send_timeout: float,
        heartbeat: float,
    ) -> None:
        # A thread of a WSGI server without gevent has no hub until this stream makes one;
        # its loop holds file descriptors, so the stream that made it destroys it.
        self._own_hub = get_hub_if_exists() is None
        self._transport = QueueTransport(queue_size, send_timeout)
        self._writer = SSEWriter(self._transport, event)
        self._heartbeat = heartbeat
        self._opened = False
        self._closed = False
        self._greenlet: gevent.Greenlet | None = spawn_stream(callback, self._writer)
        # However the callback ends (returned, dropped, killed), the body ends with it.
        self._greenlet.rawlink(self._callback_ended)

    def _callback_ended(self, greenlet: gevent.Greenlet) -> None:
        self._transport.finish()

    def __iter__(self) -> SSEIterable:
        return self

    def __next__(self) -> bytes:
        if not self._opened:
            # WSGI servers send the head with the first body bytes; a comment sends it
            # now, so the client's EventSource opens before the first event exists.
            self._opened = True
            return encode_comment("")
        transport = self._transport
        queue = transport.queue
        writer = self._writer
        heartbeat = self._heartbeat
        while not self._closed and not transport.aborted:
            if transport.finished and not queue.qsize():
                break
            try:
                payload: bytes = queue.get(timeout=writer.heartbeat_wait(heartbeat))
            except gevent.queue.Empty:
                writer.last_activity = time.monotonic()
                return encode_comment("")
            if payload is not END and not transport.aborted:
                return payload
        raise StopIteration

    def close(self) -> None:
        """The WSGI server is done (stream ended, or the client left)."""
        if self._closed:
            return
        self._closed = True
        self._transport.closed = True
        writer = self._writer
        writer.connection_lost()
        greenlet, self._greenlet = self._greenlet, None
        stop_stream(greenlet)
        writer.close()
        if self._own_hub:
            hub = get_hub_if_exists()
            if hub is not None:
                hub.destroy(destroy_loop=True)
