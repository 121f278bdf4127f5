"""Response framing, written once for both drivers: head, body pieces, end.

Strategy: h11's framing and keep-alive rules, in a small state machine of our own
(``IDLE`` → ``SEND_BODY`` → ``DONE``, or ``ERROR`` once a write failed). A driver tells
the framer what the request was (method, version, whether it asked to close) when it
hands the request head out, and the framer decides from that and the response headers:

* with a Content-Length header the body is that long;
* without one it is chunked for HTTP/1.1 clients, and ends with the connection for
  HTTP/1.0 ones (and when no request was understood);
* HEAD, 1xx, 204 and 304 responses carry no body, though a HEAD response's framing
  headers are those of the GET; a 2xx to CONNECT would open a tunnel (RFC 9110 §9.3.6),
  which h3green never does, so it closes;
* a closing connection says ``connection: close``.

Heads and bodies come back as bytes, so the server can write a whole small response with
one ``sendall`` (a separate write for the head would meet Nagle's algorithm and the
peer's delayed ACK).
"""

from __future__ import annotations

from typing import Final

from .events import NO_BODY_STATUSES, REASONS, has_token

__all__ = ["DONE", "ERROR", "IDLE", "SEND_BODY", "STATUS_LINES", "FramedResponses", "ResponseFramer"]

# Response states (h11's names).
IDLE: Final = 0  # no response yet (h11: IDLE / SEND_RESPONSE)
SEND_BODY: Final = 1
DONE: Final = 2
ERROR: Final = 3

# Body framings.
_LENGTH: Final = 0
_CHUNKED: Final = 1
_UNTIL_CLOSE: Final = 2
_NO_BODY: Final = 3

_CHUNKED_HEADER: Final = (b"transfer-encoding", b"chunked")

#: Status lines, made once (``ResponseFramer.fixed`` uses them).
STATUS_LINES: Final = {status: b"HTTP/1.1 %d %s\r\n" % (status, reason) for status, reason in REASONS.items()}
_CLOSE_LINE: Final = b"connection: close\r\n"


class ResponseFramer:
    """The response side of one connection's current cycle."""

    __slots__ = ("_closing_request", "_framing", "_method", "_remaining", "_version", "keep_alive", "state")

    def __init__(self) -> None:
        self.state = IDLE
        self.keep_alive = True
        self._framing = _LENGTH
        self._remaining = 0
        self._method = b""
        self._version: str | None = None  # None: no request was understood
        self._closing_request = False

    def request(self, method: bytes, version: str, closes: bool) -> None:
        """The request being answered (its head was just handed out)."""
        self._method = method
        self._version = version
        self._closing_request = closes

    def next_cycle(self) -> None:
        self.state = IDLE
        self._method = b""
        self._version = None
        self._closing_request = False

    def informational(self, status: int = 100) -> bytes:
        """An interim response (100 Continue), sent when the handler starts reading."""
        return b"HTTP/1.1 %d %s\r\n\r\n" % (status, REASONS.get(status, b""))

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:  # noqa: PLR0912 - one pass over the headers, a branch per framing rule (RFC 9112 §6)
        """Bytes of the status line and headers, framed as the module docstring says."""
        if self.state != IDLE:
            raise RuntimeError("a response was already started on this connection")
        method = self._method
        keep_alive = self._version is not None and not self._closing_request
        length = -1
        connection: list[bytes] | None = None
        for name, value in headers:
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                if connection is None:
                    connection = []
                connection.append(value)
        if connection is not None and has_token(connection, b"close"):
            keep_alive = False
        out = list(headers)
        if status < 200 or status in NO_BODY_STATUSES:
            framing, length = _NO_BODY, 0
        elif method == b"CONNECT" and status < 300:
            framing, length, keep_alive = _NO_BODY, 0, False
        elif length >= 0:
            framing = _LENGTH
        elif self._version == "1.1":
            framing = _CHUNKED
            out.append(_CHUNKED_HEADER)
        else:
            framing = _UNTIL_CLOSE
            if method != b"HEAD":
                keep_alive = False
        if method == b"HEAD":
            framing, length = _NO_BODY, 0
        if not keep_alive and (connection is None or not has_token(connection, b"close")):
            tokens = {t.strip().lower() for v in connection or () for t in v.split(b",") if t.strip()}
            tokens.discard(b"keep-alive")
            tokens.add(b"close")
            out = [h for h in out if h[0] != b"connection"]
            out.append((b"connection", b", ".join(sorted(tokens))))
        self.keep_alive = keep_alive
        self._framing = framing
        self._remaining = length
        self.state = SEND_BODY
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))]
        parts += [b"%s: %s\r\n" % pair for pair in out]
        parts.append(b"\r\n")
        return b"".join(parts)

    def fixed(self, status: int, lines: bytes, body: bytes, close: bool) -> bytes | None:
        """A whole response with a body of known bytes, in one piece; None when ``head``
        must frame it instead (a CONNECT, a status with no standard reason).

        *lines* are the encoded header lines, with no framing or ``Connection`` field
        among them; *close* asks for ``connection: close``. The framing is ``head``'s for
        such a response with a Content-Length, without building a list of pairs.
        """
        # PERF: with the status line made once and no (name, value) pairs to scan, and
        # _respond's encoded lines: hello 14.9 -> 12.0 us in bench/hot_path.py against
        # head() + body() + end() over pairs (bench/RESULTS.md).
        status_line = STATUS_LINES.get(status)
        if status_line is None or self._method == b"CONNECT":
            return None
        if self.state != IDLE:
            raise RuntimeError("a response was already started on this connection")
        keep_alive = not close and self._version is not None and not self._closing_request
        self.keep_alive = keep_alive
        self.state = DONE
        if status < 200 or status in NO_BODY_STATUSES:
            length = b""
            body = b""
        else:
            length = b"content-length: %d\r\n" % len(body)
            if self._method == b"HEAD":
                body = b""
        return b"".join((status_line, lines, length, b"" if keep_alive else _CLOSE_LINE, b"\r\n", body))

    def body(self, data: bytes) -> bytes:
        """Bytes framing one piece of response body (a chunk, when chunked)."""
        if self.state != SEND_BODY:
            raise RuntimeError("no response body is being sent")
        if not data:
            return b""
        framing = self._framing
        if framing == _CHUNKED:
            return b"%x\r\n%s\r\n" % (len(data), data)
        if framing == _UNTIL_CLOSE:
            return data
        self._remaining -= len(data)
        if self._remaining < 0:
            raise RuntimeError("too much data for the declared Content-Length")
        return data

    def end(self) -> bytes:
        """Bytes ending the response body (the zero chunk, when chunked)."""
        if self.state != SEND_BODY:
            raise RuntimeError("no response body is being sent")
        if self._framing == _LENGTH and self._remaining > 0:
            raise RuntimeError("too little data for the declared Content-Length")
        self.state = DONE
        return b"0\r\n\r\n" if self._framing == _CHUNKED else b""

    def failed(self) -> None:
        """The socket write failed: the connection cannot be reused."""
        self.state = ERROR

    @property
    def done(self) -> bool:
        """The response is complete and the connection may carry another."""
        return self.state == DONE and self.keep_alive


class FramedResponses:
    """The sending half of a driver, the same for both: response bytes from the driver's
    ``ResponseFramer`` (``_framer``), so each driver only parses."""

    __slots__ = ()

    _framer: ResponseFramer

    def informational(self, status: int = 100) -> bytes:
        """An interim response (100 Continue), sent when the handler starts reading."""
        return self._framer.informational(status)

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """Bytes of the status line and headers."""
        return self._framer.head(status, headers)

    def fixed(self, status: int, lines: bytes, body: bytes, close: bool) -> bytes | None:
        """A whole response with a fixed body, or None when it cannot be framed so."""
        return self._framer.fixed(status, lines, body, close)

    def body(self, data: bytes) -> bytes:
        """Bytes framing one piece of response body (a chunk, when chunked)."""
        return self._framer.body(data)

    def end(self) -> bytes:
        """Bytes ending the response body (the zero chunk, when chunked)."""
        return self._framer.end()

    def send_failed(self) -> None:
        """The socket write failed: the connection cannot be reused."""
        self._framer.failed()

    @property
    def response_started(self) -> bool:
        return self._framer.state != IDLE
