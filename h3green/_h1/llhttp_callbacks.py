"""What llhttp's callbacks say about the request being read, checked as they say it.

Strategy: httptools runs these callbacks from inside ``feed_data``; they gather one
request head (URL, fields, the few fields the framing depends on), enforce the limits and
smuggling guards listed in ``httptools_driver``'s docstring as each piece arrives, track
the reading phase, and queue the shared events for ``HttptoolsDriver.next_event``. They are
the base class of the driver (one object, so no per-callback indirection on the hot path).
"""

from __future__ import annotations

import re
from collections import deque
from types import SimpleNamespace
from typing import Final

import httptools

from .events import (
    BOTH_LENGTHS,
    END_OF_BODY,
    Body,
    Event,
    ProtocolError,
    RequestHead,
    codings_status,
    has_token,
)
from .guards import ChunkLines, EmptyLines

__all__ = [
    "BETWEEN",
    "BODY",
    "CHUNK_LINE",
    "HEAD",
    "METHOD",
    "STAND_IN",
    "RequestCallbacks",
    "llhttp_error",
    "method_refused",
]

# Reading phases, set by the callbacks.
BETWEEN: Final = 0  # between requests: none begun, or the last one complete
HEAD: Final = 1  # request line and header fields
BODY: Final = 2  # body data (or waiting for it)
CHUNK_LINE: Final = 3  # a chunk-size line or trailer field, which no callback reports

# The fields the framing and the limits depend on (checked in _on_headers_complete).
_FRAMING_FIELDS: Final = frozenset(
    {b"host", b"content-length", b"transfer-encoding", b"connection", b"expect"}
)

# llhttp's reasons, by prefix, in h3green's words (the same words as h11_driver's).
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
    ("Content-Length can't be present", BOTH_LENGTHS),
    ("Transfer-Encoding can't be present", BOTH_LENGTHS),
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


#: RFC 9110 §9.1: a method is a token (§5.6.2).
METHOD: Final = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: What llhttp is given in place of a method it does not know (it reads a GET's framing
#: as any other method's but CONNECT's).
STAND_IN: Final = b"GET"


def method_refused(exc: Exception) -> bool:
    """Did llhttp refuse a head for its method alone (one it does not know)?"""
    return isinstance(exc, httptools.HttpParserInvalidMethodError) or str(exc).startswith(
        ("Invalid method for HTTP", "Expected HTTP/2 Connection Preface")
    )


def llhttp_error(text: str) -> tuple[int, str]:
    for prefix, ours in _MESSAGES:
        if text.startswith(prefix):
            return (505 if ours.startswith("only HTTP") else 400), ours
    return 400, "malformed request"


class RequestCallbacks:
    """llhttp's callbacks for one connection, and the request state they keep."""

    __slots__ = (
        "_body_fed",
        "_chunks",
        "_cl_body",
        "_cl_left",
        "_completed",
        "_data",
        "_empty",
        "_events",
        "_ext_head",
        "_ext_method",
        "_fed_head",
        "_headers",
        "_heads",
        "_parser",
        "_phase",
        "_progress",
        "_raw",
        "_tail",
        "_url",
        "max_header_bytes",
        "max_header_count",
        "max_request_line",
    )

    def __init__(self, max_request_line: int, max_header_bytes: int, max_header_count: int) -> None:
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self._parser = self._new_parser()
        self._events: deque[Event | ProtocolError] = deque()
        # Method, version and "closes" of each queued head (RequestHead has no room).
        self._heads: deque[tuple[bytes, str, bool]] = deque()
        self._data = b""  # the bytes being fed, for the callbacks
        self._completed = 0  # requests llhttp has read to their end
        self._progress = False  # a callback fired during the current feed
        self._fed_head = 0  # bytes of the head being read, counted across feeds
        self._raw: bytearray | None = None  # those bytes, when they are known exactly
        self._body_fed = 0  # bytes fed mid-body with no callback: chunk lines, trailers
        self._phase = BETWEEN
        self._cl_body = False  # the request being read has a Content-Length body
        self._cl_left = 0  # bytes of that body not given to llhttp yet
        self._chunks: ChunkLines | None = None  # the chunked body being read
        self._empty = EmptyLines()
        self._tail = b""  # the last bytes of a head or trailer section given to llhttp
        # A head whose method llhttp refused, until its method is whole; then the method.
        self._ext_head: bytearray | None = None
        self._ext_method: bytes | None = None
        self._reset_request()

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

    # -- the callbacks -------------------------------------------------------------------

    def _on_message_begin(self) -> None:
        self._progress = True
        self._phase = HEAD  # the fields of the last head were cleared when it completed
        self._empty.reset()

    def _on_url(self, fragment: bytes) -> None:
        self._progress = True
        url = self._url = self._url + fragment if self._url else fragment
        # "M T HTTP/1.1": the method is parsed by now (one of llhttp's, or a longer one).
        if len(url) + 11 > self.max_request_line or self._ext_method:
            method = self._ext_method or self._parser.get_method()
            if len(url) + len(method) + 10 > self.max_request_line:
                raise ProtocolError(414, "request line too long")

    def _on_header(self, name: bytes, value: bytes) -> None:
        # PERF: a field is only collected here; the head's fields are checked in one pass
        # when it is complete (and bounded across reads by _check_partial_head): within
        # the noise of bench/hot_path.py for three fields (8.7 us either way), kept because
        # each field costs fewer attribute writes and one over the count is still refused.
        if self._phase != HEAD:
            self._on_trailer(name, value)
            return
        # llhttp keeps trailing whitespace; h11 (RFC 9112 §5: OWS is not the value) does not.
        self._headers.append((name.lower(), value.rstrip(b" \t")))

    def _on_trailer(self, name: bytes, value: bytes) -> None:
        """A trailer field: counted, then dropped as h11_driver does."""
        self._progress = True
        self._body_fed += len(name) + len(value) + 4
        if self._body_fed > self.max_header_bytes + self.max_request_line:
            raise ProtocolError(400, "chunk size line or trailer section too long")

    def _on_headers_complete(self) -> None:  # noqa: PLR0912, PLR0915 - every head check in one pass: the PERF point of it
        self._progress = True
        headers = self._headers
        if len(headers) > self.max_header_count:
            raise ProtocolError(431, "too many header fields")
        size = 4 * len(headers)
        hosts = 0
        length: bytes | None = None
        codings: list[bytes] | None = None
        connection: list[bytes] | None = None
        expect: list[bytes] | None = None
        for name, value in headers:
            size += len(name) + len(value)
            if name in _FRAMING_FIELDS:
                if name == b"host":
                    hosts += 1
                elif name == b"content-length":
                    length = value  # llhttp refuses a repeated one
                elif name == b"transfer-encoding":
                    codings = [value] if codings is None else [*codings, value]
                elif name == b"connection":
                    connection = [value] if connection is None else [*connection, value]
                else:  # expect
                    expect = [value] if expect is None else [*expect, value]
        if size > self.max_header_bytes:
            raise ProtocolError(431, "header block too large")
        self._phase = CHUNK_LINE if codings is not None else BODY
        self._fed_head = 0
        self._raw = None
        self._body_fed = 0
        parser = self._parser
        version = parser.get_http_version()
        if version[0] != "1":
            if version[0] == "0":  # HTTP/0.9: a request line without a version
                raise ProtocolError(400, "malformed request line")
            raise ProtocolError(505, "only HTTP/1.x is supported")
        if length is not None and codings is not None:  # pragma: no cover - llhttp refuses it first
            raise ProtocolError(400, BOTH_LENGTHS)
        if codings is not None:
            parts = [c.strip().lower() for v in codings for c in v.split(b",") if c.strip()]
            if parts != [b"chunked"]:
                raise ProtocolError(*codings_status(codings))
        if hosts != 1 and (hosts or version == "1.1"):
            raise ProtocolError(
                400, "Found multiple Host: headers" if hosts else "Missing mandatory Host: header"
            )
        self._cl_body = length is not None and bool(length.strip(b"0"))
        if self._cl_body:
            self._cl_left = int(length)  # type: ignore[arg-type]
        elif codings is not None:
            self._chunks = ChunkLines(self._head_limit())
        if (codings is not None or self._cl_body) and parser.should_upgrade():
            # httptools hands the bytes after an upgrade request's head back unread, body
            # included; h3green never upgrades, so such a body would be misread.
            raise ProtocolError(400, "a request body with Upgrade is not supported")
        try:
            target = self._url.decode("ascii")
        except UnicodeDecodeError:  # pragma: no cover - llhttp refuses such targets first
            raise ProtocolError(400, "non-ASCII byte in request target") from None
        if (b"TSP/" in self._data or b"ICE/" in self._data) and self._other_protocol():
            raise ProtocolError(400, "malformed request line")
        method = self._ext_method or parser.get_method()
        self._ext_method = None
        # For the response, once next_event hands this head out.
        closes = version != "1.1" or (connection is not None and has_token(connection, b"close"))
        self._heads.append((method, version, closes))
        expects_continue = version == "1.1" and expect is not None and has_token(expect, b"100-continue")
        self._events.append(
            RequestHead(
                method.decode("ascii"),
                target,
                headers,
                version,
                expects_continue,
                has_body=self._cl_body or codings is not None,
            )
        )
        # PERF: the head now belongs to the event; a stream holds none of it here.
        self._url = b""
        self._headers = []

    def _other_protocol(self) -> bool:
        """Is this an RTSP/1.x or ICE/1.x request line? llhttp parses those as HTTP/1.x."""
        url = self._url
        for blob in (self._data, self._raw or b""):
            if url + b" RTSP/" in blob or url + b" ICE/" in blob:
                return True
        return False

    def _on_body(self, data: bytes) -> None:
        self._progress = True
        self._events.append(Body(data))

    def _on_chunk_header(self) -> None:
        self._progress = True
        self._phase = BODY
        self._body_fed = 0

    def _on_chunk_complete(self) -> None:
        self._progress = True
        self._phase = CHUNK_LINE
        self._body_fed = 0

    def _on_message_complete(self) -> None:
        self._progress = True
        self._phase = BETWEEN
        self._tail = b""
        self._chunks = None
        self._cl_left = 0
        self._completed += 1
        self._events.append(END_OF_BODY)

    def _head_limit(self) -> int:
        # As h11_driver: h11's limit on an incomplete event.
        return self.max_header_bytes + self.max_request_line
