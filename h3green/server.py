"""The gevent server: sockets in, ``H3.handle`` in the middle, sockets out.

Strategy: a gevent ``StreamServer`` accepts; each connection gets one greenlet running
``Connection.run``, modelled on h11's trio example: read until the ``Driver`` yields a
request head, build an ``H3Event`` whose body streams from the socket on demand, call the
app, write the response (head and a fixed body in one ``sendall``), then either start the
next cycle (keep-alive, pipelining) or close.

A Server-Sent Events response hands the socket to an ``SSEWriter`` whose callback runs in
its own greenlet (``gevent.spawn_later(0, ...)``). The connection greenlet stays behind,
parked in ``recv``, for three reasons: it notices at once when the client leaves (EOF or
reset, and then kills the callback greenlet); it sends heartbeat comments when the stream
has been idle (its ``recv`` timeout is the heartbeat timer, so no extra greenlet or timer
lives per stream); and it keeps the connection counted until the stream ends, so streams
obey ``max_connections`` and graceful shutdown like any request. When the stream ends
from the other side (callback returned, writer closed, shutdown), ``wake`` throws
``_StreamDoneError`` into the parked greenlet.

Every wait has a limit: keep-alive idle time, head-read time (a total, so a client that
trickles one byte a second is cut), body-read time, write time, and SSE send time.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Final

import gevent
import gevent.event
import gevent.lock
from gevent.server import StreamServer

from . import _http11
from ._http11 import NEED_DATA, Body, ClientClosed, Driver, EndOfBody, ProtocolError, RequestHead
from ._json import json_dumps
from ._patching import patching_problems
from .app import H3
from .datastructures import Headers
from .errors import BackpressureDetected, ConnectionLost, HTTPError, SSEError
from .event import DEFAULT_MAX_BODY_SIZE, H3Event
from .response import Response, SSEResponse, close_body, error_response
from .sse import SSEWriter, encode_event, spawn_stream
from .utils.forwarded import apply_forwarded, trusted_proxies

if TYPE_CHECKING:
    from . import _httptools

__all__ = ["Config", "Connection", "Server", "serve"]

logger = logging.getLogger("h3green")
access_logger = logging.getLogger("h3green.access")

_RECV_SIZE: Final = 65536
_NO_BODY_STATUSES: Final = frozenset({204, 304})
# The server frames bodies itself; these from a handler would contradict it.
_FRAMING_HEADERS: Final = frozenset({"content-length", "transfer-encoding"})
# Error statuses that leave an unread request body unreadable or not worth draining.
_UNREAD_BODY_CLOSES: Final = frozenset({400, 408, 413})
_CLOSE_TIMEOUT: Final = 1.0  # how long a killed stream callback gets for its cleanup


@dataclasses.dataclass(slots=True)
class Config:
    """Limits and behaviour of a server; every field is a keyword of ``Server``/``serve``
    and a flag of ``python -m h3green``. README's "Limits and defaults" has the table.

    Each default follows a precedent, and is at least as strict as gunicorn's.
    """

    #: Open connections (streams included); past it, new ones get 503 and Retry-After.
    #: gunicorn's ``worker_connections`` (1,000).
    max_connections: int = 1000
    #: Bytes of request line, so of URL too: 414 past it. gunicorn's ``limit_request_line``.
    max_request_line: int = _http11.DEFAULT_MAX_REQUEST_LINE
    #: Bytes of header fields: 431 past it. node's ``--max-http-header-size`` (16 KiB).
    max_header_bytes: int = _http11.DEFAULT_MAX_HEADER_BYTES
    #: Header fields: 431 past it. gunicorn's ``limit_request_fields`` (100).
    max_header_count: int = _http11.DEFAULT_MAX_HEADER_COUNT
    #: Request body bytes (declared or, when chunked, counted): 413. nginx's 1 MiB.
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    #: Seconds a connection may wait for the first byte of its next request, then it is
    #: closed without a word. node's ``keepAliveTimeout`` (5 s).
    keepalive_timeout: float = 5.0
    #: Seconds from a request's first byte to the end of its head, in total, so a client
    #: that trickles a byte at a time is cut: 408. A sixth of node's ``headersTimeout`` and
    #: nginx's ``client_header_timeout`` (60 s): a healthy client sends its head at once.
    header_timeout: float = 10.0
    #: Seconds one read of the request body may wait: 408. nginx's
    #: ``client_body_timeout`` (60 s, also per read), halved.
    body_timeout: float = 30.0
    #: Seconds one write of a response (one ``sendall``) may wait for a client that does
    #: not read; then the connection is dropped. nginx's ``send_timeout`` (60 s), halved.
    write_timeout: float = 30.0
    #: Seconds a connection closing after an error (or a 503) keeps reading and dropping
    #: what the client still sends, so the client reads the answer rather than a reset.
    #: nginx's ``lingering_timeout`` (5 s), shortened: it also delays ``stop()``.
    linger_timeout: float = 1.0
    #: Unread request body drained after a response so the connection can be reused.
    max_drain_bytes: int = 64 * 1024
    #: Seconds of idleness after which a stream gets a heartbeat comment (0: never).
    sse_heartbeat: float = 15.0
    #: Seconds one SSE write may wait before the client counts as not reading.
    sse_send_timeout: float = 10.0
    #: Sent to every open stream at shutdown (None: just close the streams).
    sse_shutdown_event: bytes | None = encode_event(
        {"reason": "server shutting down"}, event="shutdown", retry=3000
    )
    #: Seconds ``stop()`` waits for requests and streams before cutting them.
    shutdown_timeout: float = 10.0
    #: One INFO line per response on the ``h3green.access`` logger.
    access_log: bool = True
    #: Value of the ``Server`` header, or None to send none (no version is ever leaked).
    server_header: str | None = None
    #: Listen backlog: connections the kernel queues before ``accept``. gunicorn's 2,048.
    backlog: int = 2048
    #: HTTP/1.1 parser: "auto" (httptools when importable, else h11), "httptools" (llhttp,
    #: in C: about 2.5x the hello requests/s of h11), or "h11" (pure Python, the reference).
    #: Same answers, except where llhttp is stricter (see ``_httptools``).
    http_parser: str = "auto"
    #: Proxies whose ``Forwarded``/``X-Forwarded-*`` headers set the client's address,
    #: scheme and host: comma-separated addresses and networks, or ``*`` ("": none).
    #: gunicorn's ``forwarded_allow_ips``; see ``h3green.utils.forwarded``.
    forwarded_allow_ips: str = ""

    def __post_init__(self) -> None:
        trusted_proxies(self.forwarded_allow_ips)  # a bad entry is a ValueError now
        if self.http_parser not in _PARSERS:
            raise ValueError(f"http_parser must be one of {', '.join(_PARSERS)}, got {self.http_parser!r}")
        if self.http_parser == "httptools" and _fast_driver() is None:
            raise ValueError("http_parser='httptools' needs the httptools package: pip install httptools")


_PARSERS: Final = ("h11", "httptools", "auto")


def _fast_driver() -> type[_httptools.Driver] | None:
    try:
        from . import _httptools
    except ImportError:
        return None
    return _httptools.Driver


class _StreamDoneError(Exception):
    """Thrown into a connection greenlet parked in ``recv`` when its stream has ended."""


# PERF: formatting the Date header costs ~5 us; it only changes once a second.
_date_cache: list[Any] = [0, b""]


def _date_header() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]  # type: ignore[no-any-return]


def _send_all(sock: Any, data: bytes) -> None:
    """``sock.sendall(data)``, waiting (within the socket's timeout) only if it must."""
    # PERF: gevent's sendall makes a getsockopt(SO_SNDBUF) syscall and a few Python calls
    # on every call; a response or event nearly always fits the socket buffer, so one
    # non-blocking send finishes it and sendall only ever sends a remainder (~10% of a
    # keep-alive hello request).
    try:
        sent = sock.send(data, 0, 0.0)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def _simple_response(status: int, message: str, extra: list[tuple[bytes, bytes]] = ()) -> bytes:  # type: ignore[assignment]
    """A complete HTTP/1.1 error response, for when no driver can frame one."""
    body = json_dumps(HTTPError(status, message).to_json())
    head = [
        f"HTTP/1.1 {status} {HTTPError(status).status_text}".encode(),
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        *(name + b": " + value for name, value in extra),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


_OVERLOADED: Final = _simple_response(503, "server is at its connection limit", [(b"retry-after", b"1")])


class _ConnectionBody:
    """Streams the request body from the socket when the handler asks for it."""

    __slots__ = ("_conn", "_continue_pending", "_done")

    def __init__(self, conn: Connection, expects_continue: bool) -> None:
        self._conn = conn
        self._continue_pending = expects_continue
        self._done = False

    def read(self) -> bytes:
        if self._done:
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
                self._done = True
                return b""
            if event is NEED_DATA:
                if self._continue_pending:
                    # RFC 9110 §10.1.1: the 100 goes out only once the body is wanted, so a
                    # handler that rejects the request spares the client the upload.
                    self._continue_pending = False
                    conn.send(driver.informational(100), conn.config.write_timeout)
                data = conn.recv(conn.config.body_timeout, "request body")
                driver.receive_data(data)
                if not data:
                    raise HTTPError(400, "client closed the connection before the body was complete")
            else:  # ClientClosed or PAUSED cannot happen before EndOfBody
                raise HTTPError(400, "incomplete request body")  # pragma: no cover


class _StreamTransport:
    """An ``SSEWriter``'s way to the socket: chunk framing, a write lock, timeouts."""

    __slots__ = ("_conn", "_lock")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        # Heartbeats come from the connection greenlet, events from the callback's: the
        # lock keeps their writes from interleaving on the socket.
        self._lock = gevent.lock.Semaphore()

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
            _send_all(sock, data)
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
            conn.wake()

    def abort(self) -> None:
        # Closing the socket also fails any write blocked on it, in whichever greenlet.
        self._conn.abort()

    def _drop(self) -> None:
        # Through the writer, so that it (and every later write) says BackpressureDetected
        # rather than ConnectionLost; the writer calls abort() back.
        writer = self._conn.stream
        assert writer is not None  # a transport is only used by its stream's writer
        writer.drop()
        self._conn.abort()


class Connection:
    """One client connection: the request/response loop and, for SSE, the stream watch."""

    __slots__ = (
        "_parked",
        "_stream_shutdown",
        "_wake_pending",
        "addr",
        "app",
        "closed",
        "config",
        "driver",
        "greenlet",
        "idle",
        "registry",
        "sock",
        "stream",
        "stream_greenlet",
    )

    def __init__(
        self,
        sock: Any,
        addr: Any,
        app: H3,
        config: Config,
        registry: set[Connection] | None = None,
    ) -> None:
        self.sock = sock
        self.addr = addr
        self.app = app
        self.config = config
        self.registry = registry
        driver_class = Driver if config.http_parser == "h11" else (_fast_driver() or Driver)
        self.driver: Driver | _httptools.Driver = driver_class(
            max_request_line=config.max_request_line,
            max_header_bytes=config.max_header_bytes,
            max_header_count=config.max_header_count,
        )
        self.greenlet: Any = None
        self.closed = False
        self.idle = False
        self.stream: SSEWriter | None = None
        self.stream_greenlet: gevent.Greenlet | None = None
        self._parked = False
        self._wake_pending = False
        self._stream_shutdown = False

    # -- socket I/O ----------------------------------------------------------------------

    def recv(self, timeout: float | None, what: str) -> bytes:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(_RECV_SIZE)  # type: ignore[no-any-return]
        except TimeoutError:
            raise HTTPError(408, f"timed out reading the {what}") from None
        except OSError:
            return b""

    def send(self, data: bytes, timeout: float | None) -> None:
        sock = self.sock
        sock.settimeout(timeout)
        _send_all(sock, data)

    # -- the request loop ----------------------------------------------------------------

    def run(self) -> None:
        """Serve requests until the client leaves, an error closes, or the server stops."""
        self.greenlet = gevent.getcurrent()
        registry = self.registry
        if registry is not None:
            registry.add(self)
        try:
            self._serve()
        except (OSError, _StreamDoneError):
            pass
        finally:
            self.close()
            if registry is not None:
                registry.discard(self)

    def _serve(self) -> None:
        driver = self.driver
        config = self.config
        while True:
            try:
                head = self._read_head()
            except ProtocolError as exc:
                self._reject(exc.status, exc.message)
                return
            except HTTPError as exc:  # head-read timeout
                if exc.status == 408 and self.driver.trailing_data[0]:
                    self._reject(408, exc.message)
                return
            if head is None:
                return
            event = H3Event(
                head.method,
                head.target,
                Headers.from_raw(head.headers),
                http_version=head.http_version,
                remote_addr=self.addr[0] if self.addr else None,
                body=_ConnectionBody(self, head.expects_continue),
                max_body_size=config.max_body_size,
            )
            if config.forwarded_allow_ips:
                apply_forwarded(event, config.forwarded_allow_ips)
            # PERF: an SSE response keeps this frame alive for the stream's life; the raw
            # head (a list of byte pairs, ~1 KiB) is not needed once the event has it.
            del head
            response = self.app.handle(event)
            unread = self._unread_body_is_lost(event)
            if unread:
                response.headers.set("connection", "close")
            if not self._send_response(event, response):
                return
            if unread:
                self._linger()
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
            if deadline is None and not driver.trailing_data[0]:
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
        if getattr(self.registry, "closing", False):
            return b""  # shutting down: no new request on this connection
        # Only a connection parked here, with no byte of a next request, counts as idle:
        # ``stop()`` closes those at once and lets every other one finish its request.
        self.idle = True
        try:
            return self.recv(self.config.keepalive_timeout or None, "next request")
        except HTTPError:
            return b""
        finally:
            self.idle = False

    def _reject(self, status: int, message: str) -> None:
        """Answer a request the client got wrong, then let the connection close."""
        try:
            body = json_dumps(HTTPError(status, message).to_json())
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                (b"date", _date_header()),
            ]
            if self.config.server_header:
                headers.append((b"server", self.config.server_header.encode("latin-1")))
            driver = self.driver
            data = driver.head(status, headers) + driver.body(body) + driver.end()
        except Exception:
            # h11 cannot frame a response in this state (say, mid-body); use our own.
            data = _simple_response(status, message)
        try:
            self.send(data, self.config.write_timeout)
        except OSError:
            return
        finally:
            self._log_access(None, status, 0)
        self._linger()

    def _linger(self) -> None:
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
                if not sock.recv(_RECV_SIZE):
                    return
        except OSError:
            pass

    def _unread_body_is_lost(self, event: H3Event) -> bool:
        """Is the unread rest of the request body not worth waiting for?

        RFC 9110 §10.1.1: a client waiting for ``100 Continue`` may never send the body
        when it gets a final answer instead, and a declared body larger than
        ``max_drain_bytes`` costs more to drain than a new connection does. Either way
        the response says ``Connection: close`` and the connection ends after it, rather
        than idling for ``body_timeout`` on a body that may never come.
        """
        driver = self.driver
        if driver.request_done:
            return False
        declared = event.headers.get("content-length")
        if declared in (None, "0") and "transfer-encoding" not in event.headers:
            # No body at all (a GET, say): take its end now, so the request counts as
            # done and an error answer (a 400 from a handler) keeps the connection open.
            driver.next_event()
            body = event._body
            if isinstance(body, _ConnectionBody):
                body._done = True  # a streamed response that reads it later gets b""
            return False
        body = event._body
        if isinstance(body, _ConnectionBody) and body._continue_pending:
            return True
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
                            self._linger()
                            return False
                        driver.receive_data(data)
                    elif type(event) is ClientClosed:
                        return False
            except (ProtocolError, HTTPError):
                return False
        return driver.can_reuse and not self.closed and not getattr(self.registry, "closing", False)

    # -- responses -----------------------------------------------------------------------

    def _wire_headers(self, response: Response) -> list[tuple[bytes, bytes]]:
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers._items
            if name not in _FRAMING_HEADERS
        ]
        headers.append((b"date", _date_header()))
        if self.config.server_header:
            headers.append((b"server", self.config.server_header.encode("latin-1")))
        driver = self.driver
        if getattr(self.registry, "closing", False) or (
            not driver.request_done and (response.status in _UNREAD_BODY_CLOSES or driver.client_failed)
        ):
            # Tell the client before closing: a body we will not read (too large, too slow,
            # malformed) ends the connection, as does shutdown.
            headers.append((b"connection", b"close"))
        return headers

    def _send_response(self, event: H3Event, response: Response) -> bool:
        """Write *response*; False when the connection must close at once."""
        if self.driver.response_started:  # pragma: no cover - defensive
            return False
        if isinstance(response, SSEResponse):
            return self._run_stream(event, response)
        status = response.status
        headers = self._wire_headers(response)
        driver = self.driver
        body = response.body
        timeout = self.config.write_timeout
        try:
            if type(body) is bytes:
                no_body = status in _NO_BODY_STATUSES or status < 200
                if not no_body:
                    headers.append((b"content-length", str(len(body)).encode()))
                if no_body or event.method == "HEAD":
                    data = driver.head(status, headers) + driver.end()
                else:
                    # One sendall for head and body: see the module docstring.
                    data = driver.head(status, headers) + driver.body(body) + driver.end()
                event._head_sent = True
                self.send(data, timeout)
                self._log_access(event, status, len(body))
                return True
            assert not isinstance(body, bytes)
            length = getattr(body, "content_length", None)
            if length is not None:  # a body that knows its length (a file) is not chunked
                headers.append((b"content-length", b"%d" % length))
            return self._send_streamed(event, status, headers, body, timeout)
        except OSError:
            driver.send_failed()
            self._log_access(event, status, 0)
            return False

    def _send_streamed(
        self,
        event: H3Event,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: Iterable[bytes],
        timeout: float,
    ) -> bool:
        driver = self.driver
        sent = 0
        try:
            iterator = iter(body)
            # Hold the head back until the first piece exists: an iterable that fails
            # at once still gets a proper 500 instead of a truncated 200.
            first = b"" if event.method == "HEAD" else next(iterator, b"")
        except HTTPError as exc:
            close_body(body)
            return self._send_response(event, error_response(exc))
        except Exception:
            logger.exception("streamed response body of %s %s failed", event.method, event.target)
            close_body(body)
            response = error_response(None, self.app.debug)
            return self._send_response(event, response)
        try:
            data = driver.head(status, headers)
            event._head_sent = True
            if first:
                data += driver.body(first)
                sent += len(first)
                self.send(data, timeout)
                for piece in iterator:
                    if piece:
                        sent += len(piece)
                        self.send(driver.body(piece), timeout)
                data = b""
            self.send(data + driver.end(), timeout)
        except OSError:
            driver.send_failed()
            return False
        except Exception:
            # The head is on the wire: the only honest signal left is an incomplete body.
            logger.exception("streamed response body of %s %s failed", event.method, event.target)
            driver.send_failed()
            return False
        finally:
            close_body(body)
            self._log_access(event, status, sent)
        return True

    # -- Server-Sent Events --------------------------------------------------------------

    def _run_stream(self, event: H3Event, response: SSEResponse) -> bool:
        driver = self.driver
        try:
            # PERF: no local holds the wire headers (~0.5 KiB) for the stream's life.
            self.send(driver.head(response.status, self._wire_headers(response)), self.config.write_timeout)
        except OSError:
            driver.send_failed()
            return False
        event._head_sent = True
        self._log_access(event, response.status, 0)
        writer = SSEWriter(_StreamTransport(self), event)
        self.stream = writer
        try:
            if response.callback is None or event.method == "HEAD":
                writer.close()
            else:
                greenlet = self.stream_greenlet = spawn_stream(response.callback, writer)
                # PERF: a bound method, not a lambda: no closure kept per stream.
                greenlet.rawlink(self._stream_ended)
                heartbeat = response.heartbeat
                self._watch_stream(writer, self.config.sse_heartbeat if heartbeat is None else heartbeat)
        except BaseException:
            # Cut from outside (shutdown deadline passed): drop the socket first, so the
            # callback's cleanup cannot block on a client that does not read.
            self.abort()
            raise
        finally:
            self._end_stream(writer)
        return not self.closed

    def _watch_stream(self, writer: SSEWriter, heartbeat: float) -> None:
        """Park in ``recv`` while the callback streams: EOF, heartbeat, or a wake-up."""
        driver = self.driver
        sock = self.sock
        stream_greenlet = self.stream_greenlet
        assert stream_greenlet is not None
        while writer.is_active and not stream_greenlet.dead and not self.closed:
            if self._stream_shutdown:
                self._send_shutdown_event(writer)
                return
            timeout = None
            if heartbeat > 0:
                timeout = max(0.0, writer.last_activity + heartbeat - time.monotonic())
            self._parked = True
            try:
                sock.settimeout(timeout)
                data: bytes | None = sock.recv(_RECV_SIZE)
            except _StreamDoneError:
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
                if time.monotonic() - writer.last_activity >= heartbeat:
                    try:
                        writer.send_comment("")
                    except SSEError:
                        return
                continue
            if not data:
                # EOF or reset: the hooks run and the socket closes now; the callback
                # greenlet is killed next, in _end_stream.
                self.close()
                return
            # The client may pipeline its next request; keep it, within the head limit.
            driver.receive_data(data)
            if len(driver.trailing_data[0]) > self.config.max_header_bytes:
                self.abort()
                return

    def _stream_ended(self, _greenlet: object) -> None:
        self.wake()

    def wake(self) -> None:
        """Get the connection greenlet out of its ``recv`` (the stream has ended)."""
        if self._parked and not self._wake_pending:
            self._wake_pending = True
            gevent.get_hub().loop.run_callback(self._throw_done)

    def _throw_done(self) -> None:
        self._wake_pending = False
        if self._parked and self.greenlet is not None:
            self.greenlet.throw(_StreamDoneError)

    def _end_stream(self, writer: SSEWriter) -> None:
        greenlet = self.stream_greenlet
        if greenlet is not None and not greenlet.dead:
            # GreenletExit runs the callback's finally/with blocks now, even mid-sleep.
            greenlet.kill(block=True, timeout=_CLOSE_TIMEOUT)
        writer.close()
        self.stream = None
        self.stream_greenlet = None

    def end_stream_for_shutdown(self) -> None:
        """Ask the stream to send its final event and close (graceful shutdown).

        Never blocks: the connection's own greenlet does the sending, so one client that
        does not read cannot hold up the shutdown of the others. A request still in its
        handler gets the same treatment if it turns into a stream.
        """
        self._stream_shutdown = True
        self.wake()

    def _send_shutdown_event(self, writer: SSEWriter) -> None:
        final = self.config.sse_shutdown_event
        if final:
            try:
                writer.send_raw(final)
            except SSEError:
                return
        # No switch between the final event and this: nothing the callback sends can
        # follow it; its later writes raise ConnectionLost.
        writer.shutdown()

    # -- closing -------------------------------------------------------------------------

    def abort(self) -> None:
        """The connection is unusable (reset, slow reader): close it and wake the watcher."""
        self.driver.send_failed()
        self.close()
        self.wake()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        writer = self.stream
        if writer is not None:
            writer.connection_lost()
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass

    # -- logging -------------------------------------------------------------------------

    def _log_access(self, event: H3Event | None, status: int, length: int) -> None:
        if self.config.access_log and access_logger.isEnabledFor(logging.INFO):
            remote = self.addr[0] if self.addr else "-"
            if event is None:
                access_logger.info('%s - "-" %d -', remote, status)
            else:
                access_logger.info(
                    '%s - "%s %s HTTP/%s" %d %d',
                    remote,
                    event.method,
                    event.target,
                    event.http_version,
                    status,
                    length,
                )


# accept() failures that mean "out of descriptors or memory for now", not "broken listener".
_ACCEPT_EXHAUSTED: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _ConnectionGreenlet(gevent.Greenlet):  # type: ignore[misc]
    # PERF: gevent records the 10 frames that spawned each greenlet, for its debug dumps
    # of the greenlet tree; for a connection that is always the accept loop. Skipping it
    # saves ~0.2 KiB per open connection (and stream) and 11 allocations per accept.
    spawning_stack_limit = 0


class _Listener(StreamServer):  # type: ignore[misc]
    """gevent's ``StreamServer``, quiet and patient when ``accept()`` runs out of resources.

    gevent already backs off after a failed accept (``min_delay`` 0.01 s doubling up to
    ``max_delay`` 1 s) but prints a traceback for every failure. At EMFILE the pending
    connection stays in the backlog and the listener stays readable, so without a pause
    the loop would spin; we pause accepting the same way, log one line instead of a
    traceback, and resume on a timer (not a greenlet, so nothing outlives ``close()``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accept_delay = self.min_delay
        self._resume_timer: Any = None

    def do_read(self) -> Any:
        try:
            result = super().do_read()
        except OSError as exc:
            if exc.errno not in _ACCEPT_EXHAUSTED:
                raise
            delay = self.accept_delay
            logger.warning("h3green cannot accept connections (%s); retrying in %.2f s", exc.strerror, delay)
            self.stop_accepting()
            timer = self._resume_timer = self.loop.timer(delay, ref=False)
            timer.start(self._resume)
            self.accept_delay = min(self.max_delay, delay * 2)
            return None
        if result is not None:
            self.accept_delay = self.min_delay
        return result

    def _resume(self) -> None:
        self._resume_timer = None
        if self.started:
            self.start_accepting()

    def close(self) -> None:
        if self._resume_timer is not None:
            self._resume_timer.stop()
            self._resume_timer = None
        super().close()


class _Registry(set[Connection]):
    """The open connections of one server, and whether it is shutting down."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        self.emptied = gevent.event.Event()

    def discard(self, conn: object) -> None:
        super().discard(conn)
        if not self:
            self.emptied.set()


class Server:
    """An h3green server: ``Server(app, port=0).start()``, later ``.stop(timeout)``.

    Keyword options are the fields of ``Config``. ``port=0`` picks a free port; read the
    real one from ``.address``. Pass ``listener`` (a bound, listening socket) to serve on
    a socket made elsewhere.
    """

    def __init__(
        self,
        app: H3,
        host: str = "127.0.0.1",
        port: int = 3000,
        *,
        listener: socket.socket | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(app, H3):
            raise TypeError(f"Server serves an H3 app, got {app!r}; mount WSGI apps with app.mount()")
        self.app = app
        self.config = Config(**options)
        self.connections = _Registry()
        self._stopped = gevent.event.Event()
        self._overflow = 0
        self._server = _Listener(
            listener if listener is not None else (host, port),
            self._handle,
            # A socket made elsewhere is already listening with its own backlog.
            backlog=None if listener is not None else self.config.backlog,
            spawn=_ConnectionGreenlet.spawn,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` the server listens on."""
        return self._server.address[:2]  # type: ignore[no-any-return]

    def start(self) -> None:
        """Start accepting in the background (returns at once)."""
        if problem := patching_problems():
            logger.warning(problem)
        self.app.freeze()
        self._server.start()
        address = self._server.address
        if isinstance(address, tuple):
            logger.info("h3green listening on http://%s:%d", *address[:2])
        else:  # a UNIX socket handed over by gunicorn
            logger.info("h3green listening on unix:%s", address)

    def serve_forever(self) -> None:
        """Start (unless started) and block until ``stop()`` completes."""
        if not self._server.started:
            self.start()
        self._stopped.wait()

    def _handle(self, sock: socket.socket, addr: Any) -> None:
        if len(self.connections) >= self.config.max_connections:
            self._refuse(sock)
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not TCP (a UNIX socket)
            pass
        Connection(sock, addr, self.app, self.config, self.connections).run()

    def _refuse(self, sock: socket.socket) -> None:
        """Past ``max_connections``: a quick 503 rather than a wait in the backlog."""
        if self._overflow >= self.config.max_connections:
            sock.close()
            return
        self._overflow += 1
        try:
            sock.settimeout(self.config.linger_timeout)
            sock.sendall(_OVERLOADED)
            sock.shutdown(socket.SHUT_WR)
            # Read what the client sent, so closing does not reset the connection and
            # destroy the 503 before the client reads it; bounded in time and bytes so a
            # refused client cannot hold on.
            deadline = time.monotonic() + self.config.linger_timeout
            drained = 0
            while drained <= _RECV_SIZE and (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                data = sock.recv(_RECV_SIZE)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass
        finally:
            self._overflow -= 1
            sock.close()

    def stop(self, timeout: float | None = None) -> None:
        """Graceful shutdown: stop accepting, close idle connections, end streams with
        their final event, let requests in flight finish, and cut what remains after
        *timeout* seconds (``shutdown_timeout`` by default)."""
        if timeout is None:
            timeout = self.config.shutdown_timeout
        connections = self.connections
        connections.closing = True
        logger.info("h3green shutting down: %d open connection(s)", len(connections))
        self._server.close()
        deadline = time.monotonic() + timeout
        streams = idle = 0
        for conn in list(connections):
            if conn.stream is not None:
                streams += 1
                conn.end_stream_for_shutdown()
            elif conn.idle and conn.greenlet is not None:
                idle += 1
                conn.greenlet.kill(block=False)
        if idle:
            logger.info("h3green closed %d idle connection(s)", idle)
        if streams:
            logger.info("h3green sent the shutdown event to %d stream(s)", streams)
        if busy := len(connections) - idle - streams:
            logger.info("h3green waiting up to %.1f s for %d request(s) in flight", timeout, busy)
        if connections:
            connections.emptied.clear()  # set again by the discard that empties the set
            connections.emptied.wait(max(0.0, deadline - time.monotonic()))
        if connections:
            logger.warning(
                "h3green cutting %d connection(s) still open after %.1f s", len(connections), timeout
            )
            for conn in list(connections):
                if conn.greenlet is not None:
                    conn.greenlet.kill(block=False)
            gevent.sleep(0)
        self._stopped.set()
        logger.info("h3green stopped")


def serve(app: H3, host: str = "127.0.0.1", port: int = 3000, **options: Any) -> None:
    """Serve *app* until SIGINT or SIGTERM, then shut down gracefully."""
    server = Server(app, host, port, **options)

    def on_signal() -> None:
        gevent.spawn(server.stop)

    # Signals are handled before the "listening" line: a signal sent on reading it stops
    # the server gracefully rather than killing the process.
    handlers: list[Callable[[], Any]] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        handlers.append(gevent.signal_handler(signum, on_signal))
    try:
        server.start()
        if not logger.hasHandlers():  # logging not configured: still say where to connect
            host, port = server.address
            print(f"h3green listening on http://{host}:{port}", file=sys.stderr)
        server.serve_forever()
    finally:
        for handler in handlers:
            handler.cancel()  # type: ignore[attr-defined]
