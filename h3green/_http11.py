"""HTTP/1.1 for one server-side connection, without I/O: bytes in, events out, bytes back.

Strategy: h11 does the parsing and keeps the connection's state machine; this module puts a
small interface of h3green's own in front of it, so a faster parser can replace h11 later
without touching routing, events or SSE, and adds what h11 leaves to its user:

* limits h11 does not enforce: request-line length (414), header count and header-block
  size even when the whole head arrives in one read (431);
* request-smuggling guards, each answered with a 4xx and a closed connection rather than a
  guess at the framing the client meant (a front proxy may have guessed differently):

  - RFC 9112 §6.1: a message with both Transfer-Encoding and Content-Length "ought to be
    handled as an error" → 400;
  - RFC 9112 §6.3: "If a Transfer-Encoding header field is present in a request and the
    chunked transfer coding is not the final encoding ... the server MUST respond with the
    400 (Bad Request) status code and then close the connection" → 400, also for chunked
    applied twice (§7.1: "MUST NOT apply chunked more than once"); codings we do not
    implement before a final chunked ("gzip, chunked") → 501 (§6.1: "SHOULD respond with
    501 (Not Implemented)");
  - RFC 9112 §5.2: obs-fold "MUST either reject the message by sending a 400 ... or replace
    each received obs-fold with one or more SP octets"; h11 replaces, so
    "Transfer-Encoding:\r\n chunked" would be honoured; we reject;
  - Content-Length: differing values → 400 (h11); the same value repeated ("5, 5" or two
    fields of 5) is merged, which RFC 9110 §8.6 allows ("MAY either reject the message as
    invalid or replace that invalid field value with a single instance") and is not
    ambiguous, since every reader of the repeated value arrives at the same length;
  - HTTP major version other than 1 → 505 (RFC 9110 §15.6.6);

  h11 needs the raw head for the TE and obs-fold checks, since it unfolds lines and refuses
  unknown codings before we see the headers, so the driver keeps a copy of the bytes of the
  head being read (bounded by the head limits, dropped once the head is parsed);
* error messages of our own words: h11's quote the offending bytes as Python reprs;
* response heads and bodies returned as one bytes object, so the server can write a whole
  small response with one ``sendall`` (a separate write for the head would meet Nagle's
  algorithm and the peer's delayed ACK).

The server drives it like h11's own trio example: feed bytes with ``receive_data``, pull
events with ``next_event`` until ``NEED_DATA``, send, then ``start_next_cycle`` when both
sides are done and the connection can be kept alive.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

import h11

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Body",
    "ClientClosed",
    "Driver",
    "EndOfBody",
    "ProtocolError",
    "RequestHead",
]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: More bytes are needed before anything else can be parsed.
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: The client sent a whole request; the next one waits until ``start_next_cycle``.
PAUSED: Final = _Sentinel("PAUSED")


class ProtocolError(Exception):
    """The client broke HTTP/1.1 (its fault): answer ``status`` if possible, then close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RequestHead:
    """A request line and its headers (names lower-cased, values as sent)."""

    __slots__ = ("expects_continue", "headers", "http_version", "method", "target")

    def __init__(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        http_version: str,
        expects_continue: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.expects_continue = expects_continue


class Body:
    """A piece of request body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class EndOfBody:
    """The request body is complete."""

    __slots__ = ()


class ClientClosed:
    """The client closed its side of the connection."""

    __slots__ = ()


_CLIENT_DONE: Final = frozenset({h11.DONE, h11.MUST_CLOSE, h11.CLOSED})
_END_OF_BODY: Final = EndOfBody()
_CLIENT_CLOSED: Final = ClientClosed()

Event = RequestHead | Body | EndOfBody | ClientClosed | _Sentinel

# Header-block and request-line limits follow long-standing precedent, never looser than
# gunicorn's: a 4094-byte request line (gunicorn's limit_request_line; nginx allows 8 KiB),
# 16 KiB of head (node's --max-http-header-size) and 100 header fields (gunicorn's
# limit_request_fields).
DEFAULT_MAX_REQUEST_LINE: Final = 4094
DEFAULT_MAX_HEADER_BYTES: Final = 16384
DEFAULT_MAX_HEADER_COUNT: Final = 100


_REASONS: Final = {status.value: status.phrase.encode() for status in HTTPStatus}

# h11's messages, by prefix, in h3green's words (h11's quote the client's bytes as reprs).
_MESSAGES: Final = (
    ("illegal request line", "malformed request line"),
    ("illegal header line", "malformed header field"),
    ("illegal chunk header", "malformed chunk size"),
    ("malformed chunk footer", "malformed chunk: missing CRLF after the data"),
    ("Illegal header value", "invalid header field value"),
    ("Illegal header name", "invalid header field name"),
    ("continuation line at start of headers", "obsolete line folding is not accepted"),
)


def _message(text: str) -> str:
    for prefix, ours in _MESSAGES:
        if text.startswith(prefix):
            return ours
    # h11's remaining messages are short fixed sentences ("bad Content-Length", "Missing
    # mandatory Host: header"); anything else is replaced rather than echoed.
    return text if text.isprintable() and len(text) < 80 and "bytearray" not in text else "malformed request"


_BOTH_LENGTHS: Final = "both Content-Length and Transfer-Encoding"


def _codings_status(values: list[bytes]) -> tuple[int, str]:
    """The answer to Transfer-Encoding *values* that h11 refused (see the module docstring)."""
    codings = [c.strip().lower() for v in values for c in v.split(b",") if c.strip()]
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        return 400, "Transfer-Encoding must end with a single chunked"
    return 501, "only the chunked transfer coding is implemented"


def _raw_header_values(head: bytes, name: bytes) -> list[bytes]:
    values = []
    for line in head.split(b"\n")[1:]:
        field, colon, value = line.partition(b":")
        if colon and field.strip().lower() == name:
            values.append(value.strip())
    return values


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"")


class Driver:
    """One server-side HTTP/1.1 connection, as a state machine over bytes."""

    __slots__ = ("_conn", "_raw", "_raw_limit", "max_header_bytes", "max_header_count", "max_request_line")

    def __init__(
        self,
        *,
        max_request_line: int = DEFAULT_MAX_REQUEST_LINE,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
    ) -> None:
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        # h11 refuses an *incomplete* head larger than this; complete heads are checked
        # in _head() because h11 accepts any size that arrives in one read.
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes + max_request_line)
        # The bytes of the head being read (None once it is parsed): see the docstring.
        self._raw: bytearray | None = bytearray()
        self._raw_limit = max_header_bytes + max_request_line

    # -- receiving -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the client closed its side."""
        raw = self._raw
        if raw is not None and len(raw) <= self._raw_limit:
            raw += data
        try:
            self._conn.receive_data(data)
        except h11.RemoteProtocolError as exc:  # pragma: no cover - h11 raises in next_event
            raise ProtocolError(exc.error_status_hint, str(exc)) from None

    def next_event(self) -> Event:
        """The next request head, body piece, end of body, ``NEED_DATA`` or ``PAUSED``."""
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            message = _message(str(exc))
            if status == 431 and self._raw is None:  # a chunk line or trailers, mid-body
                status, message = 400, "chunk size line or trailer section too long"
            elif status == 431 and self._line_too_long():
                status, message = 414, "request line too long"
            elif status == 431:
                message = "header block too large"
            elif status == 501:  # h11 refused a transfer coding
                raw = self._raw_head()
                if _raw_header_values(raw, b"content-length"):
                    status, message = 400, _BOTH_LENGTHS
                else:
                    status, message = _codings_status(_raw_header_values(raw, b"transfer-encoding"))
            self._raw = None
            raise ProtocolError(status, message) from None
        etype = type(event)
        if etype is h11.Data:
            return Body(event.data)  # type: ignore[union-attr]
        if etype is h11.Request:
            return self._head(event)  # type: ignore[arg-type]
        if etype is h11.EndOfMessage:
            return _END_OF_BODY
        if event is h11.NEED_DATA:
            return NEED_DATA
        if event is h11.PAUSED:
            return PAUSED
        return _CLIENT_CLOSED  # h11.ConnectionClosed

    def _line_too_long(self) -> bool:
        buffered = bytes(self._conn.trailing_data[0])
        line_end = buffered.find(b"\n")
        return line_end == -1 or line_end > self.max_request_line

    def _raw_head(self) -> bytes:
        raw = self._raw
        if raw is None:  # pragma: no cover - only asked for while a head is being read
            return b""
        end = raw.find(b"\n\r\n")
        if end == -1:
            end = raw.find(b"\n\n")
        return bytes(raw[:end] if end != -1 else raw)

    def _head(self, request: h11.Request) -> RequestHead:
        raw = self._raw_head()
        self._raw = None
        # obs-fold: a header line that starts with whitespace (RFC 9112 §5.2).
        if b"\n " in raw or b"\n\t" in raw:
            raise ProtocolError(400, "obsolete line folding is not accepted")
        if not request.http_version.startswith(b"1."):
            raise ProtocolError(505, "only HTTP/1.x is supported")
        target = request.target
        if len(request.method) + len(target) + 10 > self.max_request_line:  # "M T HTTP/1.1"
            raise ProtocolError(414, "request line too long")
        headers = list(request.headers)  # (lower-cased name, value) pairs
        if len(headers) > self.max_header_count:
            raise ProtocolError(431, "too many header fields")
        size = 0
        has_cl = has_te = False
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"content-length":
                has_cl = True
            elif name == b"transfer-encoding":
                has_te = True
        if size > self.max_header_bytes:
            raise ProtocolError(431, "header block too large")
        if has_cl and has_te:
            raise ProtocolError(400, _BOTH_LENGTHS)
        try:
            text_target = target.decode("ascii")
        except UnicodeDecodeError:  # pragma: no cover - h11 refuses such request lines first
            raise ProtocolError(400, "non-ASCII byte in request target") from None
        return RequestHead(
            request.method.decode("ascii"),
            text_target,
            headers,
            request.http_version.decode("ascii"),
            self._conn.they_are_waiting_for_100_continue,
        )

    # -- sending -------------------------------------------------------------------------

    def informational(self, status: int = 100) -> bytes:
        """An interim response (100 Continue), sent when the handler starts reading."""
        return self._conn.send(h11.InformationalResponse(status_code=status, headers=[]))

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """Bytes of the status line and headers.

        Without a Content-Length header h11 frames the body chunked for HTTP/1.1 clients
        and by closing the connection for HTTP/1.0 ones.
        """
        return self._conn.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))

    def body(self, data: bytes) -> bytes:
        """Bytes framing one piece of response body (a chunk, when chunked)."""
        if not data:
            return b""
        return self._conn.send(h11.Data(data=data))

    def end(self) -> bytes:
        """Bytes ending the response body (the zero chunk, when chunked)."""
        return self._conn.send(h11.EndOfMessage())

    def send_failed(self) -> None:
        """The socket write failed: the connection cannot be reused."""
        self._conn.send_failed()

    # -- cycle ---------------------------------------------------------------------------

    @property
    def response_started(self) -> bool:
        return self._conn.our_state is not h11.SEND_RESPONSE and self._conn.our_state is not h11.IDLE

    @property
    def request_done(self) -> bool:
        """The client finished sending the current request (body included)."""
        # Without keep-alive h11 moves a finished client straight on to MUST_CLOSE.
        return self._conn.their_state in _CLIENT_DONE

    @property
    def client_failed(self) -> bool:
        """The client broke the protocol mid-request (a bad chunk): the rest is unreadable."""
        return self._conn.their_state is h11.ERROR

    @property
    def can_reuse(self) -> bool:
        """Both sides are done and neither asked to close: another request may follow."""
        return self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE

    def start_next_cycle(self) -> None:
        self._conn.start_next_cycle()
        # A pipelined next request may already be buffered: its head starts here.
        self._raw = bytearray(self._conn.trailing_data[0][: self._raw_limit + 1])

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Bytes received but not parsed yet, and whether the client closed after them."""
        data, closed = self._conn.trailing_data
        return bytes(data), closed
