"""Writing one response on a connection: the wire headers, a fixed body, a streamed one.

Strategy: a fixed body goes out with its head in one ``sendall`` (separate small writes
meet Nagle's algorithm and the peer's delayed ACK). A streamed body's head is held back
until its first piece exists, so an iterable that fails at once still gets a proper 500
instead of a truncated 200. An SSE response sends its head, then runs as a
``_stream.Stream`` until the stream ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final

from ._h1 import NEED_DATA
from ._h1.events import NO_BODY_STATUSES
from ._stream import Stream
from ._wire import date_header, date_line, error_body, simple_response
from .event import _EMPTY_BODY as _NO_BODY
from .response import HTML, JSON, OCTET, TEXT, Response, SSEResponse, close_body, hold_head

if TYPE_CHECKING:
    from ._connection import Connection
    from .event import H3Event

__all__ = ["log_access", "reject", "send_response"]

logger = logging.getLogger("h3green")
_LOGGER = "h3green.access"
access_logger = logging.getLogger(_LOGGER)
_FORMAT = '%s - "%s %s HTTP/%s" %d %d'

# The server frames bodies itself; these from a handler would contradict it.
_FRAMING_HEADERS: Final = frozenset({"content-length", "transfer-encoding"})
# PERF: the Content-Type lines of plain return values, encoded once.
_CONTENT_TYPE_LINES: Final = {
    media_type: f"content-type: {media_type}\r\n".encode("latin-1")
    for media_type in (TEXT, HTML, JSON, OCTET)
}
# Error statuses that leave an unread request body unreadable or not worth draining.
_UNREAD_BODY_CLOSES: Final = frozenset({400, 408, 413})


def _add_server_header(conn: Connection, headers: list[tuple[bytes, bytes]]) -> None:
    server_header = conn.config.server_header
    if server_header:
        headers.append((b"server", server_header.encode("latin-1")))


def _wire_headers(conn: Connection, response: Response) -> list[tuple[bytes, bytes]]:
    headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers.items()
        if name not in _FRAMING_HEADERS
    ]
    headers.append((b"date", date_header()))
    _add_server_header(conn, headers)
    driver = conn.driver
    if conn.closing or (
        not driver.request_done and (response.status in _UNREAD_BODY_CLOSES or driver.client_failed)
    ):
        # Tell the client before closing: a body we will not read (too large, too slow,
        # malformed) ends the connection, as does shutdown.
        headers.append((b"connection", b"close"))
    return headers


def _wire_lines(conn: Connection, response: Response) -> bytes | None:
    """The encoded header lines of a response with a fixed body, Date and Server
    included; None when the handler set ``Connection`` (``head`` weighs its tokens)."""
    lines = []
    for name, value in response.headers._items:
        line = _CONTENT_TYPE_LINES.get(value) if name == "content-type" else None
        if line is None:
            if name in _FRAMING_HEADERS:
                continue
            if name == "connection":
                return None
            line = f"{name}: {value}\r\n".encode("latin-1")
        lines.append(line)
    lines.append(date_line())
    lines.append(conn.server_line)
    return b"".join(lines)


def send_response(conn: Connection, event: H3Event, response: Response) -> bool:  # noqa: PLR0911, PLR0912 - one path per response shape, each the fastest for it
    """Write *response*; False when the connection must close at once."""
    driver = conn.driver
    if driver.response_started:  # pragma: no cover - defensive
        return False
    if isinstance(response, SSEResponse):
        return _run_stream(conn, event, response)
    status = response.status
    body = response.body
    if type(body) is bytes:
        # PERF: the common response (a fixed body, no Connection field of the handler's)
        # is framed from encoded lines in one join: hello 14.9 -> 12.0 us in
        # bench/hot_path.py against building pairs and framing them with head().
        lines = _wire_lines(conn, response)
        if lines is not None:
            close = conn.closing or (
                not driver.request_done and (status in _UNREAD_BODY_CLOSES or driver.client_failed)
            )
            data = driver.fixed(status, lines, body, close)
            if data is not None:
                event.mark_head_sent()
                try:
                    conn.send(data, conn.config.write_timeout)
                except OSError:
                    driver.send_failed()
                    log_access(conn, event, status, 0)
                    return False
                if conn.config.access_log:
                    log_access(conn, event, status, len(body))
                return True
    headers = _wire_headers(conn, response)
    timeout = conn.config.write_timeout
    try:
        if type(body) is bytes:
            no_body = status in NO_BODY_STATUSES or status < 200
            if not no_body:
                headers.append((b"content-length", str(len(body)).encode()))
            if no_body or event.method == "HEAD":
                data = driver.head(status, headers) + driver.end()
            else:
                # One sendall for head and body: see the module docstring.
                data = driver.head(status, headers) + driver.body(body) + driver.end()
            event.mark_head_sent()
            conn.send(data, timeout)
            log_access(conn, event, status, len(body))
            return True
        assert not isinstance(body, bytes)
        length = getattr(body, "content_length", None)
        if length is not None:  # a body that knows its length (a file) is not chunked
            headers.append((b"content-length", b"%d" % length))
        return _send_streamed(conn, event, status, headers, body)
    except OSError:
        driver.send_failed()
        log_access(conn, event, status, 0)
        return False


def _send_streamed(
    conn: Connection,
    event: H3Event,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: Iterable[bytes],
) -> bool:
    driver = conn.driver
    timeout = conn.config.write_timeout
    sent = 0
    first: bytes | None
    iterator: Iterator[bytes]
    if event.method == "HEAD":
        first, iterator = None, iter(())
    else:
        # Hold the head back until the first piece exists: see the module docstring.
        held = hold_head(body, event, conn.app.debug)
        if isinstance(held, Response):
            return send_response(conn, event, held)
        first, iterator = held
    try:
        data = driver.head(status, headers)
        event.mark_head_sent()
        if first:
            data += driver.body(first)
            sent += len(first)
            conn.send(data, timeout)
            for piece in iterator:
                if piece:
                    sent += len(piece)
                    conn.send(driver.body(piece), timeout)
            data = b""
        conn.send(data + driver.end(), timeout)
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
        log_access(conn, event, status, sent)
    return True


def _run_stream(conn: Connection, event: H3Event, response: SSEResponse) -> bool:
    """Send the head, then hand the socket to a ``Stream``; False once it is handed over."""
    driver = conn.driver
    config = conn.config
    callback = response.callback
    streams = callback is not None and event.method != "HEAD"
    try:
        data = driver.head(response.status, _wire_headers(conn, response))
        if not streams:
            data += driver.end()  # nothing to stream: the head and the body's end at once
        conn.send(data, config.write_timeout)
    except OSError:
        driver.send_failed()
        return False
    event.mark_head_sent()
    log_access(conn, event, response.status, 0)
    if not streams:
        return True
    assert callback is not None
    # PERF: the framing is settled by the head and the stream frames its chunks itself,
    # so the parser (~3 KiB with httptools) and the connection object go with the
    # connection greenlet instead of living as long as the stream.
    chunked = driver.end() != b""
    # A next request already read (pipelined with this one) may be parsed in part: then
    # the parser stays for it; otherwise a fresh one is made when the stream ends.
    carried = None if driver.next_event() is NEED_DATA else driver
    stream = Stream(
        conn.sock,
        conn.addr,
        conn.app,
        config,
        conn.registry,
        event=event,
        status=response.status,
        chunked=chunked,
        reusable=driver.can_reuse,
        driver=carried,
    )
    # PERF: the request body source holds the connection and its parser (~3 KiB); a
    # running stream reads no body.
    event._body = _NO_BODY
    registry = conn.registry
    if registry is not None:
        registry.add(stream)  # before the connection leaves it: never an empty registry
    # The socket belongs to the stream now: the connection ends without closing it.
    conn.closed = True
    heartbeat = response.heartbeat
    stream.start(callback, config.sse_heartbeat if heartbeat is None else heartbeat)
    return False


def reject(conn: Connection, status: int, message: str) -> None:
    """Answer a request the client got wrong, then let the connection close."""
    try:
        body = error_body(status, message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"date", date_header()),
        ]
        _add_server_header(conn, headers)
        driver = conn.driver
        data = driver.head(status, headers) + driver.body(body) + driver.end()
    except Exception:
        # The driver cannot frame a response in this state (say, mid-body); use our own.
        data = simple_response(status, message)
    try:
        conn.send(data, conn.config.write_timeout)
    except OSError:
        return
    finally:
        log_access(conn, None, status, 0)
    conn.linger()


def log_access(conn: Connection, event: H3Event | None, status: int, length: int) -> None:
    """One access line (when ``access_log`` is on): to ``access_log_file``, or one INFO
    record on ``h3green.access``."""
    if not conn.config.access_log:
        return
    remote = conn.addr[0] if conn.addr else "-"
    access_file = conn.access_file
    if access_file is not None:
        if event is None:
            access_file.log(remote, "-", status, "-")
        else:
            access_file.log(
                remote, f"{event.method} {event.target} HTTP/{event.http_version}", status, length
            )
        return
    if access_logger.isEnabledFor(logging.INFO):
        # PERF: the record is made and handled directly: Logger.info would also look up
        # the caller's frame, which an access line never shows (~2 us).
        if event is None:
            record = access_logger.makeRecord(
                _LOGGER, logging.INFO, __file__, 0, '%s - "-" %d -', (remote, status), None
            )
        else:
            args = (remote, event.method, event.target, event.http_version, status, length)
            record = access_logger.makeRecord(_LOGGER, logging.INFO, __file__, 0, _FORMAT, args, None)
        access_logger.handle(record)
