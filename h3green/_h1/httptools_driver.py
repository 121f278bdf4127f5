"""HTTP/1.1 for one server-side connection on httptools (llhttp, in C): ``h11_driver``'s twin.

Strategy: the same interface and the same answers as ``H11Driver`` (the server cannot
tell them apart, and ``Config.http_parser`` chooses), with llhttp doing the parsing: a hello
request costs the driver ~6 us here against ~50 us in ``h11_driver``, and the server answers
~2.5x the requests per second. llhttp is a push parser: one ``feed_data`` runs the callbacks
(``llhttp_callbacks``) for everything in the bytes, so the driver turns callbacks into the shared events
and queues them, and ``next_event`` hands them out in order.

* Pipelining. Once the current request is complete, later bytes are held raw and
  unparsed until ``start_next_cycle`` (``next_event`` answers ``PAUSED``), so what waits is
  at most one request's parsed events plus the raw bytes, which ``trailing_data`` reports
  and the server bounds.
* Limits and smuggling guards, the ones ``h11_driver`` enforces, in the callbacks and the same
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
  field value (RFC 9110 §5.5 excludes them; h11 lets some through). Also stricter here: a
  trailer section is held to the head limits even when it arrives whole, and a request
  with ``Upgrade`` and a body is a 400, since httptools would hand its body back unread as
  the bytes after an upgrade.
* Where the two disagree on what RFC 9112 settles (empty lines before a request line,
  whitespace in chunk-size lines), ``guards`` decides for both, before the parser. Left
  looser than h11, as RFC 9112 §3 allows: more than one space between the parts of a
  request line.
* Pieces. Bytes go to llhttp a piece at a time, each ending where the framing changes (a
  head at its empty line, a Content-Length body at its length, a chunked body through
  ``guards.ChunkLines``), and whatever follows the end of the current request is held
  until its cycle is over, so a head always starts a piece. A hello request is one piece.
* Extension methods. llhttp parses only the methods it knows; RFC 9110 §9.1 allows any
  token. When llhttp refuses a head for its method alone, the driver waits for the
  method's end (414 past the request-line limit), checks it is a token (else 400) and
  feeds llhttp the head with ``GET`` in its place, which llhttp frames like any method
  but CONNECT; the event carries the real method. Every other check still runs on
  llhttp's side, so no answer gets looser, and a hello request pays nothing for it.
* Reading state: one named phase (``BETWEEN`` requests, in the ``HEAD``, in the
  ``BODY`` data, on a ``CHUNK_LINE`` or trailer) set by the callbacks, rather than a flag
  per phase.
* Responses: ``framing.ResponseFramer``, shared with the h11 driver.
"""

from __future__ import annotations

import httptools

from .events import (
    CLIENT_CLOSED,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADER_COUNT,
    DEFAULT_MAX_REQUEST_LINE,
    END_OF_BODY,
    NEED_DATA,
    PAUSED,
    Event,
    ProtocolError,
    RequestHead,
)
from .framing import FramedResponses, ResponseFramer
from .llhttp_callbacks import (
    BETWEEN,
    BODY,
    CHUNK_LINE,
    HEAD,
    METHOD,
    STAND_IN,
    RequestCallbacks,
    llhttp_error,
    method_refused,
)

__all__ = ["HttptoolsDriver"]

_LINE_END = b"\r\n"


class HttptoolsDriver(RequestCallbacks, FramedResponses):
    """One server-side HTTP/1.1 connection over httptools (the default driver)."""

    __slots__ = ("_cycle", "_delivered_end", "_eof", "_error", "_failed", "_framer", "_pending")

    def __init__(
        self,
        *,
        max_request_line: int = DEFAULT_MAX_REQUEST_LINE,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
    ) -> None:
        super().__init__(max_request_line, max_header_bytes, max_header_count)
        # Raw bytes received once the current request was complete, not fed yet.
        self._pending = bytearray()
        self._eof = False
        self._error: ProtocolError | None = None  # raised by next_event: the client failed
        self._cycle = 0  # requests whose cycle began (start_next_cycle calls)
        self._delivered_end = False  # this cycle's EndOfBody went out of next_event
        self._failed = False  # next_event raised: the client broke the protocol
        self._framer = ResponseFramer()

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

    def _feed(self, data: bytes) -> None:  # noqa: PLR0912 - one branch per framing state, kept together on the hot path
        """Give llhttp *data* a piece at a time, each piece ending where the framing
        changes: a head or trailer section at its empty line, a Content-Length body at
        its length, a chunked body through ``guards.ChunkLines``. Empty lines before a
        request line are dropped (``guards.EmptyLines``), and bytes after the end of the
        current request are held until its cycle is over, so each head starts a piece.
        """
        while data:
            if self._ext_head is not None:
                data = self._extension_method(data)
                if not data:
                    return
            chunks = self._chunks
            if chunks is not None:
                try:
                    piece, data = chunks.filter(data)
                except ProtocolError as exc:
                    self._fail(exc)
                    return
                if chunks.done:
                    self._chunks = None
                    self._tail = b"\r\n"  # the trailer section starts after a line end
            elif self._cl_left:
                piece = data[: self._cl_left]
                data = data[len(piece) :]
                self._cl_left -= len(piece)
            else:
                if (data[0] in _LINE_END or self._empty.partial) and self._phase == BETWEEN:
                    try:
                        data = self._empty.strip(data)
                    except ProtocolError as exc:
                        self._fail(exc)
                        return
                # A head or trailer section ends at its first empty line (llhttp's strict
                # mode reads CRLF line ends only); _tail: what of it a piece already gave.
                tail = self._tail
                if tail:
                    end = (tail + data).find(b"\r\n\r\n")
                    if end != -1:
                        end -= len(tail)
                else:
                    end = data.find(b"\r\n\r\n")
                if end == -1:
                    piece = data
                    data = b""
                    self._tail = (tail + piece)[-3:]
                else:
                    piece = data[: end + 4]
                    data = data[end + 4 :]
                    self._tail = b""
            if piece:
                rest = self._feed_piece(piece)
                if rest:
                    data = rest + data
            if self._error is not None:
                return
            if data and self._completed > self._cycle:
                self._pending[:0] = data
                return

    def _extension_method(self, data: bytes) -> bytes:
        """A head whose method llhttp does not know (``_feed_piece``): wait for the
        method's end, check it is a token (RFC 9110 §9.1), and give llhttp the head with
        a method it knows in its place; the event carries the real one."""
        head = self._ext_head
        assert head is not None
        head += data
        space = head.find(b" ")
        method = bytes(head if space == -1 else head[:space])
        if METHOD.fullmatch(method) is None:
            self._ext_head = None
            self._fail(ProtocolError(400, "malformed request line"))
            return b""
        if space == -1:
            if len(head) > self.max_request_line:
                self._ext_head = None
                self._fail(ProtocolError(414, "request line too long"))
            return b""
        self._ext_head = None
        self._ext_method = method
        return STAND_IN + bytes(head[space:])

    def _feed_piece(self, data: bytes) -> bytes:
        """Run llhttp over *data*; returns bytes it left unread (after an upgrade)."""
        was_in_head = self._phase == HEAD
        was_in_body = self._phase >= BODY
        self._progress = False
        self._data = data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # The request ended at its head (see the module docstring); what follows is
            # the next request's and goes to a parser of its own.
            self._parser = self._new_parser()
            return data[exc.args[0] :]
        except httptools.HttpParserCallbackError as exc:
            error = exc.__context__
            self._fail(error if isinstance(error, ProtocolError) else ProtocolError(400, "malformed request"))
            return b""
        except httptools.HttpParserError as exc:
            if (
                self._ext_method is None
                and method_refused(exc)
                and (not was_in_head or self._raw is not None)
            ):
                # A method llhttp does not know: see _extension_method. The head began
                # at the start of a piece, so its bytes so far are known exactly.
                head = bytes(self._raw or b"") + data if was_in_head else data
                self._parser = self._new_parser()
                self._reset_request()
                self._phase = BETWEEN
                self._tail = b""
                self._ext_head = bytearray()
                self._ext_method = None
                return head
            self._fail(ProtocolError(*llhttp_error(str(exc))))
            return b""
        finally:
            self._data = b""  # PERF: an idle connection keeps none of its last read
        phase = self._phase
        if phase == HEAD:
            self._fed_head += len(data)
            if not was_in_head:  # the head began at the start of these bytes
                self._raw = bytearray(data)
            elif self._raw is not None and len(self._raw) <= self._head_limit():
                self._raw += data
            self._check_partial_head()
        elif phase == CHUNK_LINE or (phase == BODY and not self._progress):
            # A chunk-size line or a trailer field in the making: no callback counts it.
            # A chunk-size line holds no LF (llhttp refuses one), so in these bytes it is
            # what follows the last LF.
            if self._progress or not was_in_body:
                self._body_fed = len(data) - data.rfind(b"\n") - 1
            else:
                self._body_fed += len(data)
            if self._body_fed > self._head_limit():
                self._fail(ProtocolError(400, "chunk size line or trailer section too long"))
        return b""

    def _check_partial_head(self) -> None:
        """Limits on a head still incomplete after a feed (see the module docstring)."""
        # A request line past its limit was refused as its URL grew (in _on_url).
        if self._fed_head > self._head_limit():
            self._fail(ProtocolError(431, "header block too large"))
        elif len(self._headers) > self.max_header_count:
            self._fail(ProtocolError(431, "too many header fields"))

    def _fail(self, error: ProtocolError) -> None:
        # Queued behind the events before it; nothing after it is readable.
        self._events.append(error)
        self._error = error

    def next_event(self) -> Event:
        """The next request head, body piece, end of body, ``NEED_DATA`` or ``PAUSED``."""
        events = self._events
        if self._delivered_end:
            if events or self._pending or self._phase == HEAD:
                return PAUSED
            return CLIENT_CLOSED if self._eof else NEED_DATA
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
            if event is END_OF_BODY:
                self._delivered_end = True
            elif type(event) is RequestHead:
                method, version, closes = self._heads.popleft()
                self._framer.request(method, version, closes)
            return event  # type: ignore[return-value]  # a ProtocolError was raised above
        if self._eof:
            if self._phase != BETWEEN or self._ext_head is not None:
                self._fail(ProtocolError(400, "the client closed the connection mid-request"))
                return self.next_event()
            self._delivered_end = True  # as h11's CLOSED client: nothing more will come
            return CLIENT_CLOSED
        return NEED_DATA

    # -- cycle ---------------------------------------------------------------------------

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
        return self._framer.done and self._delivered_end and not self._failed

    def start_next_cycle(self) -> None:
        if not self.can_reuse:
            raise RuntimeError("the connection cannot carry another request")
        self._cycle += 1
        self._delivered_end = False
        self._framer.next_cycle()

    @property
    def buffered(self) -> bool:
        """Bytes of a next request were received and are not parsed yet (see ``driver``)."""
        # PERF: what trailing_data would say, without making its bytes (0.12 us against
        # 0.19 between two requests).
        return bool(
            self._pending
            or self._phase == HEAD
            or self._ext_head is not None
            or self._empty.partial
            or (self._chunks is not None and self._chunks.partial)
        )

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Bytes received but not parsed yet, and whether the client closed after them.

        llhttp consumes what it is fed, so the bytes of a head still incomplete count as
        unparsed: ``bytes(self._raw)`` when known, else the parts reported so far.
        """
        pending = self._pending
        if self._phase == HEAD:
            raw = self._raw
            partial = bytes(raw) if raw is not None else self._url + b"".join(n + v for n, v in self._headers)
            return partial + bytes(pending), self._eof
        if self._ext_head is not None:
            held = bytes(self._ext_head)
        elif self._chunks is not None:
            held = self._chunks.partial
        else:
            held = self._empty.partial
        return held + bytes(pending), self._eof
