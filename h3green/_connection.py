"""One client connection: the request loop, and the only place that reads requests.

Strategy: modelled on h11's trio example. ``Connection.run`` reads until the driver
yields a request head, builds an ``H3Event`` whose body streams from the socket on demand
(``_RequestBody``), calls the app, has ``_respond`` write the response (head and a fixed
body in one ``sendall``), then either starts the next cycle (keep-alive, pipelining) or
closes. A Server-Sent Events response takes the socket over (``_stream.Stream``) and
this connection ends; a new one continues after the stream when the socket may be reused.

Every wait has a limit: keep-alive idle time, head-read time (a total, so a client that
trickles one byte a second is cut), body-read time, write time, and SSE send time.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

import gevent

from . import _respond
from ._accesslog import access_log_file
from ._h1 import NEED_DATA, Body, ClientClosed, Driver, EndOfBody, ProtocolError, RequestHead, driver_class
from ._wire import RECV_SIZE
from .datastructures import RequestHeaders
from .errors import HTTPError
from .event import H3Event
from .utils.forwarded import apply_forwarded

if TYPE_CHECKING:
    from .app import H3
    from .config import Config

__all__ = ["Connection"]


class _IdleTimeout(Exception):
    """Thrown into a connection's greenlet when its keep-alive wait is over."""


class _RequestBody:
    """Streams the request body from the socket when the handler asks for it."""

    __slots__ = ("_conn", "continue_pending", "done")

    def __init__(self, conn: Connection, expects_continue: bool) -> None:
        self._conn = conn
        #: The client waits for ``100 Continue`` before it sends the body.
        self.continue_pending = expects_continue
        #: The body's end was read (or there is none).
        self.done = False

    def read(self) -> bytes:
        if self.done:
            return b""
        conn = self._conn
        driver = conn.driver
        while True:
            try:
                event = driver.next_event()
            except ProtocolError as exc:
                raise HTTPError(exc.status, exc.message) from None
            if type(event) is Body:
                return event.data
            if type(event) is EndOfBody:
                self.done = True
                return b""
            if event is NEED_DATA:
                if self.continue_pending:
                    # RFC 9110 §10.1.1: the 100 goes out only once the body is wanted, so a
                    # handler that rejects the request spares the client the upload.
                    self.continue_pending = False
                    conn.send(driver.informational(100), conn.config.write_timeout)
                data = conn.recv(conn.config.body_timeout, "request body")
                driver.receive_data(data)
                if not data:
                    raise HTTPError(400, "client closed the connection before the body was complete")
            else:  # ClientClosed or PAUSED cannot happen before EndOfBody
                raise HTTPError(400, "incomplete request body")  # pragma: no cover


class Connection:
    """One client connection: the request/response loop."""

    __slots__ = (
        "_idle_timer",
        "access_file",
        "addr",
        "app",
        "closed",
        "config",
        "driver",
        "greenlet",
        "idle",
        "registry",
        "served",
        "server_line",
        "sock",
    )

    def __init__(
        self,
        sock: Any,
        addr: Any,
        app: H3,
        config: Config,
        registry: Any = None,
    ) -> None:
        self.sock = sock
        self.addr = addr
        self.app = app
        self.config = config
        #: The server's registry (a set of connections with ``closing``), if any.
        self.registry = registry
        self.driver: Driver = driver_class(config.http_parser)(
            max_request_line=config.max_request_line,
            max_header_bytes=config.max_header_bytes,
            max_header_count=config.max_header_count,
        )
        #: Where access lines go when ``Config.access_log_file`` names a file.
        self.access_file = (
            access_log_file(config.access_log_file) if config.access_log and config.access_log_file else None
        )
        #: The encoded ``server:`` header line (empty without ``Config.server_header``).
        self.server_line = (
            f"server: {config.server_header}\r\n".encode("latin-1") if config.server_header else b""
        )
        self.greenlet: Any = None
        #: Done with the socket: closed, or handed to an SSE stream.
        # The keep-alive timer, made on the first idle wait.
        self._idle_timer: Any = None
        self.closed = False
        self.idle = False
        #: True once a request head has been read: only then can the connection be idle.
        self.served = False

    @property
    def closing(self) -> bool:
        """The server is shutting down: no new request on this connection."""
        registry = self.registry
        return registry is not None and registry.closing

    # -- socket I/O ----------------------------------------------------------------------

    def _settimeout(self, timeout: float | None) -> None:
        # PERF: gevent's settimeout is Python code (~0.2 us); most calls would change
        # nothing, and reading the timeout costs ~0.04 us.
        sock = self.sock
        if sock.timeout != timeout:
            sock.settimeout(timeout)

    def recv(self, timeout: float | None, what: str) -> bytes:
        self._settimeout(timeout)
        try:
            return self.sock.recv(RECV_SIZE)  # type: ignore[no-any-return]
        except TimeoutError:
            raise HTTPError(408, f"timed out reading the {what}") from None
        except OSError:
            return b""

    def send(self, data: bytes, timeout: float | None) -> None:
        sock = self.sock
        # PERF: a response nearly always fits the socket buffer, so one non-blocking send
        # finishes it: the write timeout is set only for a remainder (see send_all), which
        # spares a settimeout (~0.2 us) per response.
        try:
            sent = sock.send(data, 0, 0.0)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self._settimeout(timeout)
            sock.sendall(memoryview(data)[sent:])

    # -- the request loop ----------------------------------------------------------------

    def run(self) -> None:
        """Serve requests until the client leaves, an error closes, or the server stops."""
        self.greenlet = gevent.getcurrent()
        registry = self.registry
        if registry is not None:
            registry.add(self)
        try:
            self._serve()
        except OSError:
            pass
        finally:
            self.close()
            if registry is not None:
                registry.discard(self)

    def _serve(self) -> None:
        driver = self.driver
        config = self.config
        # PERF: what every request needs, looked up once per connection.
        handle = self.app.handle
        remote_addr = self.addr[0] if self.addr else None
        max_body_size = config.max_body_size
        forwarded_allow_ips = config.forwarded_allow_ips
        while True:
            try:
                head = self._read_head()
            except ProtocolError as exc:
                _respond.reject(self, exc.status, exc.message)
                return
            except HTTPError as exc:  # head-read timeout
                if exc.status == 408 and self.driver.trailing_data[0]:
                    _respond.reject(self, 408, exc.message)
                return
            if head is None:
                return
            self.served = True
            if head.has_body:
                body: _RequestBody | None = _RequestBody(self, head.expects_continue)
            else:
                # PERF: no body, so no reader and no Content-Length/Transfer-Encoding
                # lookups after the handler; its end is taken now, and the request counts
                # as done (an error answer keeps the connection open). With the lazy
                # headers: hello 10.0 -> 8.7 us in bench/hot_path.py (bench/RESULTS.md).
                body = None
                driver.next_event()
            event = H3Event(
                head.method,
                head.target,
                RequestHeaders(head.headers),
                http_version=head.http_version,
                remote_addr=remote_addr,
                body=body,
                max_body_size=max_body_size,
            )
            if forwarded_allow_ips:
                apply_forwarded(event, forwarded_allow_ips)
            # PERF: an SSE response keeps this frame alive for the stream's life; the raw
            # head (a list of byte pairs, ~1 KiB) is not needed once the event has it.
            del head
            response = handle(event)
            unread = body is not None and self._unread_body_is_lost(event, body)
            if unread:
                response.headers.set("connection", "close")
            if not _respond.send_response(self, event, response):
                return
            if unread:
                self.linger()
                return
            if not self._finish_cycle():
                return
            driver.start_next_cycle()

    def _read_head(self) -> RequestHead | None:
        """The next request head, or None when the client closed between requests."""
        driver = self.driver
        deadline = None
        while True:
            event = driver.next_event()
            if type(event) is RequestHead:
                return event
            if type(event) is ClientClosed:
                return None
            if event is not NEED_DATA:  # pragma: no cover - nothing else precedes a head
                raise ProtocolError(400, f"unexpected {event!r}")
            if deadline is None and not driver.buffered:
                # Between requests: the keep-alive idle limit applies until the first byte.
                data = self._recv_idle()
                if not data:
                    return None
            else:
                if deadline is None:
                    deadline = time.monotonic() + self.config.header_timeout
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise HTTPError(408, "timed out reading the request head")
                data = self.recv(remaining, "request head")
            if deadline is None:
                deadline = time.monotonic() + self.config.header_timeout
            driver.receive_data(data)

    def _recv_idle(self) -> bytes:
        served = self.served
        if served and self.closing:
            return b""  # shutting down: no new request on a kept-alive connection
        # Only a connection that has carried a request and waits here with no byte of the
        # next one counts as idle: ``stop()`` closes those at once and lets every other one
        # finish its request. A new connection is not idle: its client has most likely
        # sent its request already, and closing it unread would answer with a reset.
        self.idle = served
        # PERF: one hub timer per connection, started and stopped around each wait
        # (~0.1 us), instead of the gevent Timeout object a socket timeout makes for every
        # blocking recv (~2.5% of a request's CPU in a py-spy profile under wrk, ~1 us).
        timer = self._idle_timer
        if timer is None:
            keepalive = self.config.keepalive_timeout
            if keepalive:
                timer = self._idle_timer = gevent.get_hub().loop.timer(keepalive)
        sock = self.sock
        if sock.timeout is not None:
            sock.settimeout(None)
        if timer is not None:
            timer.start(self.greenlet.throw, _IdleTimeout)
        try:
            return sock.recv(RECV_SIZE)  # type: ignore[no-any-return]
        except (_IdleTimeout, OSError):
            return b""
        finally:
            if timer is not None:
                timer.stop()
            self.idle = False

    def linger(self) -> None:
        """Half-close, then read and drop what the client still sends, for a moment.

        Closing a socket with unread input makes the kernel answer with a reset, which can
        destroy the response just sent before the client has read it; like nginx's
        ``lingering_close``, wait for the client's end, for at most ``linger_timeout``.
        """
        sock = self.sock
        deadline = time.monotonic() + self.config.linger_timeout
        try:
            sock.shutdown(socket.SHUT_WR)
            while (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                if not sock.recv(RECV_SIZE):
                    return
        except OSError:
            pass

    def _unread_body_is_lost(self, event: H3Event, body: _RequestBody) -> bool:
        """Is the unread rest of the request body not worth waiting for?

        RFC 9110 §10.1.1: a client waiting for ``100 Continue`` may never send the body
        when it gets a final answer instead, and a declared body larger than
        ``max_drain_bytes`` costs more to drain than a new connection does. Either way
        the response says ``Connection: close`` and the connection ends after it, rather
        than idling for ``body_timeout`` on a body that may never come.
        """
        if self.driver.request_done:
            return False
        if body.continue_pending:
            return True
        declared = event.headers.get("content-length")
        return declared is not None and declared.isdigit() and int(declared) > self.config.max_drain_bytes

    def _finish_cycle(self) -> bool:
        """After a response: may this connection carry another request?"""
        driver = self.driver
        if not driver.request_done:
            # The handler did not read the whole body: drain a little so the next request
            # can be parsed; a large remainder is cheaper to drop with the connection.
            drained = 0
            try:
                while not driver.request_done:
                    event = driver.next_event()
                    if event is NEED_DATA:
                        data = self.recv(self.config.body_timeout, "request body")
                        if not data:
                            return False
                        drained += len(data)
                        if drained > self.config.max_drain_bytes:
                            self.linger()
                            return False
                        driver.receive_data(data)
                    elif type(event) is ClientClosed:
                        return False
            except (ProtocolError, HTTPError):
                return False
        return driver.can_reuse and not self.closed and not self.closing

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass
