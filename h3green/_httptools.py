"""HTTP/1.1 for one server-side connection on httptools (llhttp, in C): ``_http11``'s twin.

Strategy: the same interface and the same answers as ``_http11.Driver`` (the server cannot
tell them apart, and ``Config.http_parser`` chooses), with llhttp doing the parsing: a hello
request costs the driver ~6 us here against ~50 us in ``_http11``, and the server answers
~2.5x the requests per second. llhttp is a push parser: one ``feed_data`` runs the callbacks
below for everything in the bytes, so the driver turns callbacks into the ``_http11`` events
and queues them, and ``next_event`` hands them out in order.

* Pipelining. llhttp cannot be stopped at the end of a request, so one feed may carry the
  next request's events too; they wait in the queue behind the current ``EndOfBody`` until
  ``start_next_cycle`` (``next_event`` answers ``PAUSED``). Once the current request is
  complete, later bytes are held raw and unparsed, so what waits is at most one read's worth
  of parsed events plus the raw bytes, which ``trailing_data`` reports and the server
  bounds.
* Limits and smuggling guards, the ones ``_http11`` enforces, in the callbacks and the same
  words: request line 414; header count and bytes 431, counted field by field, and for a
  head that arrives in pieces also by the bytes fed since it began (a field still being read
  is buffered inside httptools, so no callback reports its growth); 400 for Content-Length
  with Transfer-Encoding, for Transfer-Encoding not ending in a single chunked and 501 for
  codings before it; 400 for a missing or repeated Host; 505 for a major version other than
  1, and 400 for an RTSP/ or ICE/ request line, which llhttp parses as HTTP; 400 for an
  over-long chunk-size line or trailer section. llhttp's strict mode refuses the rest itself
  (obs-fold, CR/LF/NUL in values, bad tokens, invalid chunks, overflowing lengths); its
  messages are replaced by ours.
* Where llhttp is stricter than h11 its answer stands: a repeated Content-Length, even of
  one value ("3, 3" or two fields of 3; RFC 9110 §8.6 allows rejecting it), a bare LF as a
  line ending (RFC 9112 §2.2 allows rejecting it), a control character other than HTAB in a
  field value (RFC 9110 §5.5 excludes them; h11 lets some through), and a method llhttp does
  not know (it parses only registered methods, so a very long method is a 400, not a 414).
  Also stricter here: a trailer section is held to the head limits even when it arrives
  whole, and a request with ``Upgrade`` and a body is a 400, since httptools would hand its
  body back unread as the bytes after an upgrade.
* Where llhttp is looser, ``_http11``'s answer is kept where it can be seen: an empty line
  before a request line is a 400 when it starts the bytes of a head (llhttp skips it, as RFC
  9112 §2.2 allows; between two pipelined requests of one read it is still skipped). Left
  looser, as RFC 9112 §3 allows: more than one space between the parts of a request line.
* Responses: a serializer of our own, with h11's framing and keep-alive rules (see
  ``head``).
"""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace
from typing import Final

import httptools

from ._http11 import (
    _BOTH_LENGTHS,
    _END_OF_BODY,
    _REASONS,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADER_COUNT,
    DEFAULT_MAX_REQUEST_LINE,
    NEED_DATA,
    PAUSED,
    Body,
    ClientClosed,
    Event,
    ProtocolError,
    RequestHead,
    _codings_status,
)

__all__ = ["Driver"]

_CLIENT_CLOSED: Final = ClientClosed()

# llhttp's reasons, by prefix, in h3green's words (the same words as _http11's).
_MESSAGES: Final = (
    ("Invalid method", "malformed request line"),
    ("Invalid char in url", "malformed request line"),
    ("Expected HTTP/", "malformed request line"),
    ("Expected SOURCE", "malformed request line"),
    ("Expected space", "malformed request line"),
    ("Expected CRLF after version", "malformed request line"),
    ("Invalid HTTP version", "only HTTP/1.x is supported"),
    ("Invalid header value char", "invalid header field value"),
    ("Invalid header token", "invalid header field name"),
    ("Invalid header field char", "invalid header field name"),
    ("Unexpected whitespace after header value", "obsolete line folding is not accepted"),
    ("Unexpected space after start line", "obsolete line folding is not accepted"),
    ("Duplicate Content-Length", "repeated Content-Length"),
    ("Content-Length can't be present", _BOTH_LENGTHS),
    ("Transfer-Encoding can't be present", _BOTH_LENGTHS),
    ("Request has invalid `Transfer-Encoding`", "Transfer-Encoding must end with a single chunked"),
    ("Invalid `Transfer-Encoding`", "Transfer-Encoding must end with a single chunked"),
    ("Missing expected LF after header value", "invalid header field value"),
    ("Missing expected CR after header value", "malformed header field"),
    ("Missing expected CR after chunk data", "malformed chunk: missing CRLF after the data"),
    ("Missing expected CR after chunk", "malformed chunk size"),
    ("Invalid character in Content-Length", "bad Content-Length"),
    ("Empty Content-Length", "bad Content-Length"),
    ("Content-Length overflow", "bad Content-Length"),
    ("Invalid character in chunk", "malformed chunk size"),
    ("Chunk size overflow", "malformed chunk size"),
    ("Expected LF after chunk", "malformed chunk: missing CRLF after the data"),
    ("Expected CRLF after chunk", "malformed chunk: missing CRLF after the data"),
    ("Data after `Connection: close`", "data after a request that closes the connection"),
)

# Response states (h11's names for ours).
_IDLE: Final = 0  # no response yet (h11: IDLE / SEND_RESPONSE)
_SEND_BODY: Final = 1
_DONE: Final = 2
_ERROR: Final = 3

# Response framings.
_LENGTH: Final = 0
_CHUNKED: Final = 1
_UNTIL_CLOSE: Final = 2
_NO_BODY: Final = 3

_CLOSE_HEADER: Final = (b"connection", b"close")
_CHUNKED_HEADER: Final = (b"transfer-encoding", b"chunked")


def _message(text: str) -> tuple[int, str]:
    for prefix, ours in _MESSAGES:
        if text.startswith(prefix):
            return (505 if ours.startswith("only HTTP") else 400), ours
    return 400, "malformed request"


def _has_token(values: list[bytes], token: bytes) -> bool:
    return any(part.strip().lower() == token for value in values for part in value.split(b","))


class Driver:
    """One server-side HTTP/1.1 connection over httptools: see ``_http11.Driver``."""

    __slots__ = (
        "_body_fed",
        "_cl_body",
        "_closing_request",
        "_completed",
        "_connection",
        "_crlf_end",
        "_cycle",
        "_data",
        "_delivered_end",
        "_eof",
        "_error",
        "_events",
        "_expect",
        "_failed",
        "_fed_head",
        "_field_bytes",
        "_framing",
        "_has_cl",
        "_has_te",
        "_headers",
        "_heads",
        "_hosts",
        "_in_body",
        "_in_chunk_line",
        "_in_head",
        "_keep_alive",
        "_parser",
        "_pending",
        "_progress",
        "_raw",
        "_remaining",
        "_request_method",
        "_request_version",
        "_response",
        "_te",
        "_url",
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
        self._parser = self._new_parser()
        self._events: deque[Event | ProtocolError] = deque()
        # Method, version and "closes" of each queued head (RequestHead has no room).
        self._heads: deque[tuple[bytes, str, bool]] = deque()
        self._data = b""  # the bytes being fed, for the callbacks
        # Raw bytes received once the current request was complete, not fed yet.
        self._pending = bytearray()
        self._eof = False
        self._error: ProtocolError | None = None  # raised by next_event: the client failed
        self._completed = 0  # requests llhttp has read to their end
        self._cycle = 0  # requests whose cycle began (start_next_cycle calls)
        self._delivered_end = False  # this cycle's EndOfBody went out of next_event
        self._progress = False  # a callback fired during the current feed
        self._fed_head = 0  # bytes of the head being read, counted across feeds
        self._raw: bytearray | None = None  # those bytes, when they are known exactly
        self._body_fed = 0  # bytes fed mid-body with no callback: chunk lines, trailers
        self._in_head = False
        self._in_body = False
        self._in_chunk_line = False
        self._crlf_end = True
        self._cl_body = False  # the request being read has a Content-Length body
        self._failed = False  # next_event raised: the client broke the protocol
        self._reset_request()
        # The request side of the cycle, kept for the response.
        self._request_method = b""
        self._request_version: str | None = None
        self._closing_request = False
        # The response side.
        self._response = _IDLE
        self._framing = _LENGTH
        self._remaining = 0
        self._keep_alive = True

    def _new_parser(self) -> httptools.HttpRequestParser:
        callbacks = SimpleNamespace(
            on_message_begin=self._on_message_begin,
            on_url=self._on_url,
            on_header=self._on_header,
            on_headers_complete=self._on_headers_complete,
            on_body=self._on_body,
            on_message_complete=self._on_message_complete,
            on_chunk_header=self._on_chunk_header,
            on_chunk_complete=self._on_chunk_complete,
        )
        return httptools.HttpRequestParser(callbacks)

    def _reset_request(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._field_bytes = 0
        self._hosts = 0
        self._has_cl = False
        self._has_te = False
        self._te: list[bytes] = []
        self._connection: list[bytes] = []
        self._expect: list[bytes] = []

    # -- llhttp callbacks ----------------------------------------------------------------

    def _on_message_begin(self) -> None:
        self._progress = True
        self._in_head = True  # the fields of the last head were cleared when it completed

    def _on_url(self, fragment: bytes) -> None:
        self._progress = True
        url = self._url = self._url + fragment if self._url else fragment
        # "M T HTTP/1.1": the method is parsed by now.
        if len(url) + 11 > self.max_request_line and len(url) + len(self._parser.get_method()) + 10 > (
            self.max_request_line
        ):
            raise ProtocolError(414, "request line too long")

    def _on_header(self, name: bytes, value: bytes) -> None:
        self._progress = True
        if not self._in_head:  # a trailer field: counted, then dropped as _http11 does
            self._body_fed += len(name) + len(value) + 4
            if self._body_fed > self.max_header_bytes + self.max_request_line:
                raise ProtocolError(400, "chunk size line or trailer section too long")
            return
        name = name.lower()
        # llhttp keeps trailing whitespace; h11 (RFC 9112 §5: OWS is not the value) does not.
        value = value.rstrip(b" \t")
        headers = self._headers
        headers.append((name, value))
        self._field_bytes += len(name) + len(value) + 4
        if len(headers) > self.max_header_count:
            raise ProtocolError(431, "too many header fields")
        if self._field_bytes > self.max_header_bytes:
            raise ProtocolError(431, "header block too large")
        if name == b"host":
            self._hosts += 1
        elif name == b"content-length":
            self._has_cl = True
        elif name == b"transfer-encoding":
            self._has_te = True
            self._te.append(value)
        elif name == b"connection":
            self._connection.append(value)
        elif name == b"expect":
            self._expect.append(value)

    def _on_headers_complete(self) -> None:
        self._progress = True
        self._in_head = False
        self._in_body = True
        self._in_chunk_line = self._has_te
        self._fed_head = 0
        self._raw = None
        self._body_fed = 0
        parser = self._parser
        version = parser.get_http_version()
        if version[0] != "1":
            if version[0] == "0":  # HTTP/0.9: a request line without a version
                raise ProtocolError(400, "malformed request line")
            raise ProtocolError(505, "only HTTP/1.x is supported")
        if self._has_cl and self._has_te:  # pragma: no cover - llhttp refuses it first
            raise ProtocolError(400, _BOTH_LENGTHS)
        if self._has_te:
            codings = [c.strip().lower() for v in self._te for c in v.split(b",") if c.strip()]
            if codings != [b"chunked"]:
                raise ProtocolError(*_codings_status(self._te))
        if self._hosts != 1 and (self._hosts or version == "1.1"):
            raise ProtocolError(
                400, "Found multiple Host: headers" if self._hosts else "Missing mandatory Host: header"
            )
        self._cl_body = self._has_cl and self._declares_body()
        if parser.should_upgrade() and (self._has_te or self._cl_body):
            # httptools hands the bytes after an upgrade request's head back unread, body
            # included; h3green never upgrades, so such a body would be misread.
            raise ProtocolError(400, "a request body with Upgrade is not supported")
        try:
            target = self._url.decode("ascii")
        except UnicodeDecodeError:  # pragma: no cover - llhttp refuses such targets first
            raise ProtocolError(400, "non-ASCII byte in request target") from None
        if (b"TSP/" in self._data or b"ICE/" in self._data) and self._other_protocol():
            raise ProtocolError(400, "malformed request line")
        method = parser.get_method()
        # For the response, once next_event hands this head out.
        closes = version != "1.1" or (bool(self._connection) and _has_token(self._connection, b"close"))
        self._heads.append((method, version, closes))
        expects_continue = (
            version == "1.1" and bool(self._expect) and _has_token(self._expect, b"100-continue")
        )
        self._events.append(
            RequestHead(method.decode("ascii"), target, self._headers, version, expects_continue)
        )
        # PERF: the head now belongs to the event; a stream holds none of it here.
        self._reset_request()

    def _other_protocol(self) -> bool:
        """Is this an RTSP/1.x or ICE/1.x request line? llhttp parses those as HTTP/1.x."""
        url = self._url
        for blob in (self._data, self._raw or b""):
            if url + b" RTSP/" in blob or url + b" ICE/" in blob:
                return True
        return False

    def _declares_body(self) -> bool:
        return any(name == b"content-length" and value.strip(b"0") for name, value in self._headers)

    def _on_body(self, data: bytes) -> None:
        self._progress = True
        self._events.append(Body(data))

    def _on_chunk_header(self) -> None:
        self._progress = True
        self._in_chunk_line = False
        self._body_fed = 0

    def _on_chunk_complete(self) -> None:
        self._progress = True
        self._in_chunk_line = True
        self._body_fed = 0

    def _on_message_complete(self) -> None:
        self._progress = True
        self._in_body = False
        self._in_chunk_line = False
        # The next head starts right after a line end unless a Content-Length body ended this.
        self._crlf_end = not self._cl_body
        self._completed += 1
        self._events.append(_END_OF_BODY)

    # -- receiving -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the client closed its side."""
        if not data:
            self._eof = True
        elif self._completed > self._cycle or self._error is not None or self._pending or self._events:
            # The current request is complete (or broken), or its events are not taken yet
            # (a stream runs while the client sends): hold the bytes, unparsed and counted.
            self._pending += data
        else:
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        at_boundary = not self._in_head and not self._in_body and self._completed == self._cycle
        if at_boundary and data[0] in b"\r\n":
            # An empty line before the request line: RFC 9112 §2.2 lets a server skip it;
            # h11 (and so _http11) refuses it.
            self._fail(ProtocolError(400, "malformed request line"))
            return
        was_in_head = self._in_head
        was_in_body = self._in_body
        completed = self._completed
        self._progress = False
        self._data = data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # The request ended at its head (see the module docstring); what follows is
            # the next request's and goes to a parser of its own.
            self._parser = self._new_parser()
            self._pending[:0] = data[exc.args[0] :]
            return
        except httptools.HttpParserCallbackError as exc:
            error = exc.__context__
            self._fail(error if isinstance(error, ProtocolError) else ProtocolError(400, "malformed request"))
            return
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(*_message(str(exc))))
            return
        finally:
            self._data = b""  # PERF: an idle connection keeps none of its last read
        if self._in_head:
            if completed != self._completed and self._crlf_end:
                # The head began after a request that ended in this feed, at an offset
                # httptools does not tell; that request ended with an empty line, and a
                # head in the making has none, so it starts after the last one.
                start = max(data.rfind(b"\n\r\n") + 3, data.rfind(b"\n\n") + 2)
                self._raw = bytearray(data[start:])
                self._fed_head = len(self._raw)
            elif completed != self._completed:
                # ... or after a body: count what the callbacks reported (a lower bound).
                self._fed_head = len(self._url) + self._field_bytes
            else:
                self._fed_head += len(data)
                if not was_in_head:  # the head began at the start of these bytes
                    self._raw = bytearray(data)
                elif self._raw is not None and len(self._raw) <= self._head_limit():
                    self._raw += data
            self._check_partial_head()
        elif self._in_body and (self._in_chunk_line or not self._progress):
            # A chunk-size line or a trailer field in the making: no callback counts it.
            # A chunk-size line holds no LF (llhttp refuses one), so in these bytes it is
            # what follows the last LF.
            if self._progress or not was_in_body:
                self._body_fed = len(data) - data.rfind(b"\n") - 1
            else:
                self._body_fed += len(data)
            if self._body_fed > self._head_limit():
                self._fail(ProtocolError(400, "chunk size line or trailer section too long"))

    def _head_limit(self) -> int:
        # As _http11: h11's limit on an incomplete event.
        return self.max_header_bytes + self.max_request_line

    def _check_partial_head(self) -> None:
        """Limits on a head still incomplete after a feed (see the module docstring)."""
        # A request line past its limit was refused as its URL grew (in _on_url).
        if self._fed_head > self._head_limit():
            self._fail(ProtocolError(431, "header block too large"))

    def _fail(self, error: ProtocolError) -> None:
        # Queued behind the events before it; nothing after it is readable.
        self._events.append(error)
        self._error = error

    def next_event(self) -> Event:
        """The next request head, body piece, end of body, ``NEED_DATA`` or ``PAUSED``."""
        events = self._events
        if self._delivered_end:
            if events or self._pending or self._in_head:
                return PAUSED
            return _CLIENT_CLOSED if self._eof else NEED_DATA
        if not events and self._pending and self._error is None:
            pending = bytes(self._pending)
            self._pending.clear()
            self._feed(pending)
        if events:
            event = events[0]
            if type(event) is ProtocolError:
                # Left in the queue: asked again, it is raised again, as h11 does.
                self._failed = True
                raise event
            events.popleft()
            if event is _END_OF_BODY:
                self._delivered_end = True
            elif type(event) is RequestHead:
                self._request_method, self._request_version, self._closing_request = self._heads.popleft()
            return event  # type: ignore[return-value]  # a ProtocolError was raised above
        if self._eof:
            if self._in_head or self._in_body:
                self._fail(ProtocolError(400, "the client closed the connection mid-request"))
                return self.next_event()
            self._delivered_end = True  # as h11's CLOSED client: nothing more will come
            return _CLIENT_CLOSED
        return NEED_DATA

    # -- sending -------------------------------------------------------------------------

    def informational(self, status: int = 100) -> bytes:
        """An interim response (100 Continue), sent when the handler starts reading."""
        return b"HTTP/1.1 %d %s\r\n\r\n" % (status, _REASONS.get(status, b""))

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """Bytes of the status line and headers, framed as h11 frames them.

        With a Content-Length header the body is that long; without one it is chunked for
        HTTP/1.1 clients and ends with the connection for HTTP/1.0 ones (and when no
        request was understood). HEAD, 1xx, 204 and 304 responses carry no body, though a
        HEAD response's framing headers are those of the GET. A closing connection says
        ``connection: close``.
        """
        if self._response != _IDLE:
            raise RuntimeError("a response was already started on this connection")
        method = self._request_method
        keep_alive = self._request_version is not None and not self._closing_request
        length = -1
        connection: list[bytes] | None = None
        for name, value in headers:
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                if connection is None:
                    connection = []
                connection.append(value)
        if connection is not None and _has_token(connection, b"close"):
            keep_alive = False
        out = list(headers)
        if status < 200 or status in (204, 304):
            framing, length = _NO_BODY, 0
        elif method == b"CONNECT" and status < 300:
            # A tunnel would follow (RFC 9110 §9.3.6); h3green opens none, so it closes.
            framing, length, keep_alive = _NO_BODY, 0, False
        elif length >= 0:
            framing = _LENGTH
        elif self._request_version == "1.1":
            framing = _CHUNKED
            out.append(_CHUNKED_HEADER)
        else:
            framing = _UNTIL_CLOSE
            if method != b"HEAD":
                keep_alive = False
        if method == b"HEAD":
            framing, length = _NO_BODY, 0
        if not keep_alive and (connection is None or not _has_token(connection, b"close")):
            tokens = {t.strip().lower() for v in connection or () for t in v.split(b",") if t.strip()}
            tokens.discard(b"keep-alive")
            tokens.add(b"close")
            out = [h for h in out if h[0] != b"connection"]
            out.append((b"connection", b", ".join(sorted(tokens))))
        self._keep_alive = keep_alive
        self._framing = framing
        self._remaining = length
        self._response = _SEND_BODY
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
        parts += [b"%s: %s\r\n" % pair for pair in out]
        parts.append(b"\r\n")
        return b"".join(parts)

    def body(self, data: bytes) -> bytes:
        """Bytes framing one piece of response body (a chunk, when chunked)."""
        if self._response != _SEND_BODY:
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
        if self._response != _SEND_BODY:
            raise RuntimeError("no response body is being sent")
        if self._framing == _LENGTH and self._remaining > 0:
            raise RuntimeError("too little data for the declared Content-Length")
        self._response = _DONE
        return b"0\r\n\r\n" if self._framing == _CHUNKED else b""

    def send_failed(self) -> None:
        """The socket write failed: the connection cannot be reused."""
        self._response = _ERROR

    # -- cycle ---------------------------------------------------------------------------

    @property
    def response_started(self) -> bool:
        return self._response != _IDLE

    @property
    def request_done(self) -> bool:
        """The client finished sending the current request (body included)."""
        return self._delivered_end

    @property
    def client_failed(self) -> bool:
        """The client broke the protocol mid-request (a bad chunk): the rest is unreadable."""
        return self._failed

    @property
    def can_reuse(self) -> bool:
        """Both sides are done and neither asked to close: another request may follow."""
        return self._response == _DONE and self._keep_alive and self._delivered_end and not self._failed

    def start_next_cycle(self) -> None:
        if not self.can_reuse:
            raise RuntimeError("the connection cannot carry another request")
        self._cycle += 1
        self._delivered_end = False
        self._response = _IDLE
        self._request_method = b""
        self._request_version = None
        self._closing_request = False

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Bytes received but not parsed yet, and whether the client closed after them.

        llhttp consumes what it is fed, so the bytes of a head still incomplete count as
        unparsed: ``bytes(self._raw)`` when known, else the parts reported so far.
        """
        pending = self._pending
        if self._in_head:
            raw = self._raw
            partial = bytes(raw) if raw is not None else self._url + b"".join(n + v for n, v in self._headers)
            return partial + bytes(pending), self._eof
        return bytes(pending), self._eof
