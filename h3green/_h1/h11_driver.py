"""HTTP/1.1 for one server-side connection, without I/O: bytes in, events out, bytes back.

Strategy: h11 does the parsing and keeps the connection's state machine; this module puts a
small interface of h3green's own in front of it, so the httptools driver can replace h11
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
* the byte-level ``guards`` shared with the httptools driver: empty lines before a request
  line are dropped (h11 refuses them), and chunk-size lines are checked against RFC 9112
  §7.1 (h11 takes anything after a ``;``) and handed to h11 as the size alone; for that,
  h11 gets the bytes a piece at a time (a head up to its empty line, then the body), so
  the bytes after a chunked request's head reach it only through ``guards.ChunkLines``;
* error messages of our own words: h11's quote the offending bytes as Python reprs;
* responses framed by ``framing.ResponseFramer``, shared with the httptools driver; h11
  reads requests only. Its connection object insists on seeing our response before it
  starts the next cycle, so each cycle gets a fresh ``h11.Connection`` fed the bytes the
  last one had not parsed (``start_next_cycle``).

The server drives it through the ``Driver`` Protocol (see ``driver``).
"""

from __future__ import annotations

from typing import Final

import h11

from .events import (
    BOTH_LENGTHS,
    CLIENT_CLOSED,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADER_COUNT,
    DEFAULT_MAX_REQUEST_LINE,
    END_OF_BODY,
    NEED_DATA,
    PAUSED,
    Body,
    Event,
    ProtocolError,
    RequestHead,
    codings_status,
    has_token,
)
from .framing import FramedResponses, ResponseFramer
from .guards import ChunkLines, EmptyLines

__all__ = ["H11Driver"]

_CLIENT_DONE: Final = frozenset({h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.MIGHT_SWITCH_PROTOCOL})  # type: ignore[attr-defined]
# A client that asked to upgrade waits in MIGHT_SWITCH_PROTOCOL until h11 sees the answer,
# which it never does here (see the docstring): it is done, and h3green never upgrades.
_CLIENT_REUSABLE: Final = frozenset({h11.DONE, h11.MIGHT_SWITCH_PROTOCOL})  # type: ignore[attr-defined]

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


def _raw_header_values(head: bytes, name: bytes) -> list[bytes]:
    values = []
    for line in head.split(b"\n")[1:]:
        field, colon, value = line.partition(b":")
        if colon and field.strip().lower() == name:
            values.append(value.strip())
    return values


class H11Driver(FramedResponses):
    """One server-side HTTP/1.1 connection, parsed by h11 (the reference driver)."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_empty",
        "_eof",
        "_error",
        "_framer",
        "_raw",
        "_raw_limit",
        "_unfed",
        "max_header_bytes",
        "max_header_count",
        "max_request_line",
    )

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
        self._conn = self._new_connection()
        # The bytes of the head being read (None once it is parsed): see the docstring.
        self._raw: bytearray | None = bytearray()
        self._raw_limit = max_header_bytes + max_request_line
        self._framer = ResponseFramer()
        # Bytes received and not given to h11 yet: it gets them a piece at a time (see
        # ``_feed``), so chunk-size lines can be checked before it reads them.
        self._unfed = bytearray()
        self._eof = False  # the client closed; h11 is told once it has every byte
        self._empty = EmptyLines()
        self._chunks: ChunkLines | None = None  # the chunked body being read
        self._error: ProtocolError | None = None  # a guard refused the bytes

    def _new_connection(self) -> h11.Connection:
        # h11 refuses an *incomplete* head larger than this; complete heads are checked
        # in _head() because h11 accepts any size that arrives in one read.
        return h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.max_header_bytes + self.max_request_line
        )

    # -- receiving -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the client closed its side."""
        if data:
            self._unfed += data
        else:
            self._eof = True

    def _feed(self) -> bool:
        """Give h11 the next piece of the unfed bytes; False when there is nothing to give.

        A head is given up to its end (the first empty line), so that the bytes after a
        chunked request's head reach h11 only through ``ChunkLines``; empty lines before
        a request line are dropped (``guards``).
        """
        conn = self._conn
        unfed = self._unfed
        if not unfed:
            if self._eof and conn.their_state is not h11.ERROR and not conn.trailing_data[1]:
                conn.receive_data(b"")
                return True
            return False
        data = bytes(unfed)
        unfed.clear()
        raw = self._raw
        chunks = self._chunks
        if chunks is not None:
            data, rest = chunks.filter(data)
            if chunks.done:
                self._chunks = None
            unfed += rest
        elif raw is not None:
            if not raw:
                data = self._empty.strip(data)
            # The head ends at its first empty line (h11 reads bare LF line ends too).
            tail = bytes(raw[-2:])
            both = tail + data
            ends = [at + n for at, n in ((both.find(b"\n\r\n"), 3), (both.find(b"\n\n"), 2)) if at != -1]
            if ends:
                cut = min(ends) - len(tail)
                if 0 < cut < len(data):
                    unfed += data[cut:]
                    data = data[:cut]
            if len(raw) <= self._raw_limit:  # pragma: no branch - h11 refuses a longer head
                raw += data
        if data:
            conn.receive_data(data)
        return True

    def next_event(self) -> Event:
        """The next request head, body piece, end of body, ``NEED_DATA`` or ``PAUSED``."""
        if self._error is not None:
            raise self._error
        try:
            while (event := self._conn.next_event()) is h11.NEED_DATA and self._feed():
                pass
        except h11.RemoteProtocolError as exc:
            raise self._error_from(exc) from None
        except ProtocolError as exc:
            self._error = exc
            raise
        etype = type(event)
        if etype is h11.Data:
            return Body(event.data)  # type: ignore[union-attr]
        if etype is h11.Request:
            return self._head(event)  # type: ignore[arg-type]
        if etype is h11.EndOfMessage:
            return END_OF_BODY
        if event is h11.NEED_DATA:
            return NEED_DATA
        if event is h11.PAUSED:
            return PAUSED
        return CLIENT_CLOSED  # h11.ConnectionClosed

    def _error_from(self, exc: h11.RemoteProtocolError) -> ProtocolError:
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
                status, message = 400, BOTH_LENGTHS
            else:
                status, message = codings_status(_raw_header_values(raw, b"transfer-encoding"))
        self._raw = None
        return ProtocolError(status, message)

    def _line_too_long(self) -> bool:
        buffered = bytes(self._conn.trailing_data[0])
        line_end = buffered.find(b"\n")
        return line_end == -1 or line_end > self.max_request_line

    def _raw_head(self) -> bytes:
        raw = self._raw
        if raw is None:  # pragma: no cover - only asked for while a head is being read
            return b""
        # h11 has parsed a whole head (or refused one): it ends at the first empty line.
        end = raw.find(b"\n\r\n")
        if end == -1:
            end = raw.find(b"\n\n")
        return bytes(raw[:end] if end != -1 else raw)

    def _head(self, request: h11.Request) -> RequestHead:
        raw = self._raw_head()
        self._raw = None
        self._empty.reset()
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
        has_cl = has_te = has_body = False
        connection = []
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"content-length":
                has_cl = True
                has_body = bool(value.strip(b"0"))
            elif name == b"transfer-encoding":
                has_te = True
            elif name == b"connection":
                connection.append(value)
        if size > self.max_header_bytes:
            raise ProtocolError(431, "header block too large")
        if has_cl and has_te:
            raise ProtocolError(400, BOTH_LENGTHS)
        if has_te:  # h11 accepts "chunked" alone: the body's size lines are checked first
            self._chunks = ChunkLines(self._raw_limit)
        try:
            text_target = target.decode("ascii")
        except UnicodeDecodeError:  # pragma: no cover - h11 refuses such request lines first
            raise ProtocolError(400, "non-ASCII byte in request target") from None
        version = request.http_version.decode("ascii")
        # h11's keep-alive rule: HTTP/1.0, or Connection: close.
        self._framer.request(request.method, version, version != "1.1" or has_token(connection, b"close"))
        return RequestHead(
            request.method.decode("ascii"),
            text_target,
            headers,
            version,
            self._conn.they_are_waiting_for_100_continue,
            has_body=has_body or has_te,
        )

    # -- cycle ---------------------------------------------------------------------------

    @property
    def request_done(self) -> bool:
        """The client finished sending the current request (body included)."""
        # Without keep-alive h11 moves a finished client straight on to MUST_CLOSE.
        return self._conn.their_state in _CLIENT_DONE

    @property
    def client_failed(self) -> bool:
        """The client broke the protocol mid-request (a bad chunk): the rest is unreadable."""
        return self._error is not None or self._conn.their_state is h11.ERROR

    @property
    def can_reuse(self) -> bool:
        """Both sides are done and neither asked to close: another request may follow."""
        return self._framer.done and self._conn.their_state in _CLIENT_REUSABLE

    def start_next_cycle(self) -> None:
        if not self.can_reuse:
            raise RuntimeError("the connection cannot carry another request")
        data, _ = self._conn.trailing_data
        self._conn = self._new_connection()
        self._framer.next_cycle()
        self._chunks = None
        # A pipelined next request may already be buffered: its head starts here, and
        # goes to the new h11 connection a piece at a time like any other bytes.
        self._raw = bytearray()
        self._unfed[:0] = data

    @property
    def buffered(self) -> bool:
        """Bytes of a next request were received and are not parsed yet (see ``driver``)."""
        return bool(self.trailing_data[0])

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Bytes received but not parsed yet, and whether the client closed after them."""
        data, _ = self._conn.trailing_data
        held = self._chunks.partial if self._chunks is not None else self._empty.partial
        return bytes(data) + held + bytes(self._unfed), self._eof
