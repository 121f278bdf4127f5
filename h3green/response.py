"""From whatever a handler returns to a status, headers and a body.

========================  =====================================  ==========================
handler returns           body                                   Content-Type
========================  =====================================  ==========================
``str``                   UTF-8 bytes                            text/plain; charset=utf-8
bytes-like                as is                                  application/octet-stream
dict/list/number/bool     compact JSON                           application/json
set, dataclass, datetime, JSON (see ``h3green._json``)            application/json
UUID, Decimal, Enum
``None``                  empty (status staged on the event, or 200)
``Response``              as given
other iterables           streamed (chunked on HTTP/1.1)         application/octet-stream
                          (str items are UTF-8 encoded)          unless staged
========================  =====================================  ==========================

Headers staged on the event (``event.set_header``) are merged under the response's own:
a name the response sets itself wins.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._h1.events import NO_BODY_STATUSES
from ._json import is_json_extra, json_dumps
from .datastructures import Headers, HeadersInit
from .errors import HTTPError
from .sse import EventStream

if TYPE_CHECKING:
    from .event import H3Event, StreamCallback

__all__ = [
    "Response",
    "SSEResponse",
    "error_response",
    "html",
    "json_dumps",
    "no_content",
    "redirect",
    "to_response",
]

logger = logging.getLogger("h3green")

TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
JSON = "application/json"
OCTET = "application/octet-stream"

Body = bytes | Iterable[bytes]


def check_status(status: int) -> None:
    """Refuse a status that cannot end a response.

    1xx codes are interim (RFC 9110 §15.2): the server sends ``100 Continue`` itself, and
    a handler's answer must be final, so only 200-999 is accepted.
    """
    if not 200 <= status <= 999:
        raise ValueError(f"invalid status code {status}: a response needs a final status, 200-999")


def close_body(body: object) -> None:
    """Call a response body's ``close()`` if it has one (PEP 3333 requires it of servers);
    a failure there is the app's bug, logged rather than allowed to break the connection."""
    close = getattr(body, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            logger.exception("closing a response body failed")


class _EncodedStream:
    """The pieces of a streamed body as bytes; ``close()`` reaches the handler's iterable.

    A plain wrapping generator would not do: closing one that never started does not run
    its ``finally``, so the handler's generator (and what it holds open) would stay
    suspended until garbage collection.
    """

    __slots__ = ("_items", "_source")

    def __init__(self, source: Iterable[Any]) -> None:
        self._source = source
        self._items: Iterator[Any] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._items is None:
            self._items = iter(self._source)
        item = next(self._items)
        if isinstance(item, str):
            return item.encode()
        if isinstance(item, bytes | bytearray | memoryview):
            return bytes(item)
        raise TypeError(f"streamed body items must be str or bytes, got {type(item).__name__}")

    def close(self) -> None:
        close_body(self._source)


def _encode(value: Any, dumps: Callable[[Any], bytes] = json_dumps) -> tuple[Body, str | None]:  # noqa: PLR0911 - one return per kind of return value (the table above)
    """A body value as (bytes or an iterator of bytes, its default media type)."""
    if value is None:
        return b"", None
    if isinstance(value, str):
        return value.encode(), TEXT
    if isinstance(value, bytes):
        return value, OCTET
    if isinstance(value, bytearray | memoryview):
        return bytes(value), OCTET
    if isinstance(value, dict | list | tuple | int | float | bool):
        return dumps(value), JSON
    if isinstance(value, Iterable) and not is_json_extra(value):
        return _EncodedStream(value), OCTET
    # A set, a dataclass, a datetime... or a value only the app's json_default knows:
    # the encoder raises a TypeError naming the type for anything else.
    return dumps(value), JSON


class Response:
    """An explicit response: ``Response({"ok": True}, status=201, headers={...})``.

    *body* takes any value a handler may return (see the module table); *media_type*
    overrides the Content-Type that value implies.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: Any = None,
        status: int = 200,
        headers: HeadersInit = None,
        media_type: str | None = None,
    ) -> None:
        check_status(status)
        self.status = status
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body, default_type = _encode(body)
        if status in NO_BODY_STATUSES and type(self.body) is not bytes:
            # RFC 9110 §15.3.5/§15.4.5: 204 and 304 end at the head; a stream would have
            # nowhere to go, so release it now rather than leave its generator suspended.
            close_body(self.body)
            self.body = b""
        media_type = media_type or default_type
        if media_type is not None and "content-type" not in self.headers:
            # PERF: append, not set: the name is absent, so set's rebuild of the list is waste.
            self.headers.append("content-type", media_type)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.status}>"


class SSEResponse(Response):
    """An event stream: its head is sent, then ``callback(writer)`` runs in a greenlet."""

    __slots__ = ("callback", "heartbeat")

    def __init__(
        self,
        callback: StreamCallback | None,
        status: int = 200,
        headers: HeadersInit = None,
        heartbeat: float | None = None,
    ) -> None:
        super().__init__(None, status, headers)
        self.callback = callback
        self.heartbeat = heartbeat


def html(content: str, status: int = 200, headers: HeadersInit = None) -> Response:
    """An HTML response."""
    return Response(content, status, headers, media_type=HTML)


def redirect(location: str, status: int = 302, headers: HeadersInit = None) -> Response:
    """A redirect to *location* (302 by default; 301, 303, 307 and 308 also make sense)."""
    if not 300 <= status <= 399:
        raise ValueError(f"redirect status must be 3xx, got {status}")
    response = Response(None, status, headers)
    response.headers.set("location", location)
    return response


def no_content(headers: HeadersInit = None) -> Response:
    """204 No Content."""
    return Response(None, 204, headers)


def to_response(value: Any, event: H3Event, dumps: Callable[[Any], bytes] = json_dumps) -> Response:
    """Turn a handler's return value into a ``Response`` (staged status applied); JSON
    bodies are encoded with *dumps* (an app's own, when it has a ``json_default``)."""
    if isinstance(value, Response):
        # An SSEResponse comes back from next() through middleware: that one is fine.
        if event.is_sse and not isinstance(value, SSEResponse):
            raise RuntimeError(
                "a handler that called start_sse() must return None or an EventStream, "
                f"not a {type(value).__name__}"
            )
        return value
    if isinstance(value, EventStream):
        if not event.is_sse:
            event.start_sse()
        event.set_stream_callback(value.run)
        value = None
    if event.is_sse:
        if value is not None:
            raise RuntimeError(
                "a handler that called start_sse() must return None or an EventStream, "
                f"not {type(value).__name__}"
            )
        return SSEResponse(event.stream_callback, event.res.status or 200, heartbeat=event.sse_heartbeat)
    res = event._res
    status = 200
    media_type = None
    if res is not None:
        status = res.status or 200
        # A Content-Type the handler staged beats the one its plain return value implies.
        media_type = res.headers.get("content-type") if res.headers else None
    if dumps is not json_dumps:
        value, default_type = _encode(value, dumps)
        media_type = media_type or default_type
    else:
        # PERF: the usual return values skip Response.__init__'s checks (the status was
        # checked when staged; the Content-Type is ours or was checked when staged); with
        # the lazy staged response: hello 12.0 -> 10.0 us, json-params 24.9 -> 19.2 us in
        # bench/hot_path.py (bench/RESULTS.md).
        kind = type(value)
        if kind is str:
            return _plain(value.encode(), status, media_type or TEXT)
        if kind is dict or kind is list:
            return _plain(dumps(value), status, media_type or JSON)
    return Response(value, status, media_type=media_type)


def _plain(body: bytes, status: int, media_type: str) -> Response:
    """A ``Response`` of *body* bytes and a Content-Type, made without checks."""
    response = Response.__new__(Response)
    response.status = status
    response.body = body
    headers = response.headers = Headers.__new__(Headers)
    headers._items = [("content-type", media_type)]
    return response


def merge_staged(response: Response, event: H3Event) -> Response:
    """Put headers staged on the event under the response's own.

    ``Set-Cookie`` is the exception: each one is a separate cookie (RFC 6265 §3), so the
    staged ones (a session's, say) are kept next to the response's own.
    """
    res = event._res
    staged = res.headers if res is not None else None
    if staged:
        own = response.headers
        # Every staged Set-Cookie is kept beside the response's own (a session cookie and
        # a proxied upstream's cookies are different cookies); other names: the response wins.
        response.headers = Headers.from_pairs(
            [item for item in staged.items() if item[0] == "set-cookie" or item[0] not in own] + own.items()
        )
    return response


def hold_head(
    body: Iterable[bytes], event: H3Event, debug: bool = False
) -> tuple[bytes | None, Iterator[bytes]] | Response:
    """Pull a streamed body's first piece before its head is sent (native server and WSGI).

    Holding the head back until the first piece exists means an iterable that fails at
    once still gets an honest error response instead of a truncated 200. Returns the
    first piece (None when the body is empty) and the iterator for the rest, or the error
    ``Response`` to send instead (the body is then closed, and an unhandled failure logged).
    """
    try:
        iterator = iter(body)
        return next(iterator, None), iterator
    except HTTPError as exc:
        close_body(body)
        return error_response(exc)
    except Exception:
        logger.exception("streamed response body of %s %s failed", event.method, event.target)
        close_body(body)
        return error_response(None, debug)


def error_response(exc: HTTPError | None, debug: bool = False) -> Response:
    """The JSON error body for *exc*, or for an unhandled exception when *exc* is None."""
    if exc is not None:
        return Response(exc.to_dict(), exc.status, exc.headers)
    body: dict[str, Any] = {"status": 500, "unhandled": True, "message": "Internal Server Error"}
    if debug:
        body["stack"] = traceback.format_exc().splitlines()
    return Response(body, 500)
