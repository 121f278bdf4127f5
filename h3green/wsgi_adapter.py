"""An ``H3`` app served by any WSGI server (gunicorn -k gevent, uWSGI, wsgiref...).

Strategy, H3 as WSGI (``serve_wsgi``, ``WSGIAdapter``): the environ becomes an
``H3Event`` (its body a ``BodySource`` over ``wsgi.input`` that never reads past
``CONTENT_LENGTH``), ``app.handle`` runs exactly as on the native server, and the
``Response`` goes back through ``start_response``. PEP 3333 hands ``PATH_INFO`` over as
the raw bytes decoded as latin-1; they are percent-quoted again so that the app's own
canonicalisation (strict UTF-8, dot segments) applies unchanged. Routing uses
``PATH_INFO``: the app lives at ``SCRIPT_NAME``.

Server-Sent Events through WSGI: see ``h3green._wsgi_stream``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypedDict, Unpack
from urllib.parse import quote

from ._h1.events import NO_BODY_STATUSES
from ._wsgi_stream import SSEIterable
from .datastructures import Headers
from .errors import HTTPError, status_text
from .event import DEFAULT_MAX_BODY_SIZE, H3Event
from .response import Response, SSEResponse, close_body, error_response, hold_head

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .app import H3

__all__ = ["WSGIAdapter", "WSGIConfig", "WSGIOptions", "event_from_environ", "serve_wsgi"]

# RFC 9110 §7.6.1: connection-specific fields belong to the server that frames the
# response; PEP 3333 forbids an application to send them.
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
# RFC 3986 §3.3: characters a path segment may hold unescaped ("/" separates them).
_PATH_SAFE: Final = "/!$&'()*+,;=:@-._~"
_READ_CHUNK: Final = 65536


@dataclasses.dataclass(slots=True)
class WSGIConfig:
    """Limits of the WSGI path; every field is a keyword of ``WSGIAdapter``."""

    #: Largest request body accepted (413 beyond), as ``Config.max_body_size``.
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    #: Seconds of stream idleness after which a heartbeat comment is yielded (0: never).
    sse_heartbeat: float = 15.0
    #: Seconds a stream callback may wait on a full queue before the client counts as
    #: not reading (0: wait forever).
    sse_send_timeout: float = 10.0
    #: Encoded events queued per stream between the callback and the WSGI server.
    sse_queue_size: int = 64

    def __post_init__(self) -> None:
        if self.sse_queue_size < 1:
            raise ValueError(f"sse_queue_size must be at least 1, got {self.sse_queue_size}")
        if self.max_body_size < 0 or self.sse_heartbeat < 0 or self.sse_send_timeout < 0:
            raise ValueError("max_body_size, sse_heartbeat and sse_send_timeout must be >= 0")


class WSGIOptions(TypedDict, total=False):
    """``WSGIConfig``'s fields as keyword options of ``WSGIAdapter`` (kept in step by a test)."""

    max_body_size: int
    sse_heartbeat: float
    sse_send_timeout: float
    sse_queue_size: int


_DEFAULT_CONFIG: Final = WSGIConfig()


# -- H3 as a WSGI application ----------------------------------------------------------------


class _WSGIBody:
    """A ``BodySource`` over ``wsgi.input`` that stops at ``CONTENT_LENGTH``.

    PEP 3333: "the application should not attempt to read more data than is specified
    by the CONTENT_LENGTH variable"; without one the body is empty, unless the server
    sets ``wsgi.input_terminated`` (then the stream ends with the body).
    """

    __slots__ = ("_input", "_remaining")

    def __init__(self, stream: Any, length: int | None) -> None:
        self._input = stream
        self._remaining = length

    def read(self) -> bytes:
        remaining = self._remaining
        if remaining is not None and remaining <= 0:
            return b""
        size = _READ_CHUNK if remaining is None else min(remaining, _READ_CHUNK)
        try:
            data: bytes = self._input.read(size)
        except OSError:
            raise HTTPError(400, "the request body could not be read") from None
        if remaining is None:
            return data
        if not data:
            raise HTTPError(400, "client closed the connection before the body was complete")
        self._remaining = remaining - len(data)
        return data


def _environ_headers(environ: WSGIEnvironment) -> Headers:
    items = []
    for key, value in environ.items():
        if key[:5] == "HTTP_" and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            items.append((key[5:].replace("_", "-").lower(), value))
    content_type = environ.get("CONTENT_TYPE")
    if content_type:
        items.append(("content-type", content_type))
    content_length = environ.get("CONTENT_LENGTH")
    if content_length:
        items.append(("content-length", content_length))
    return Headers.from_pairs(items)


def _quote_path(wsgi_path: str) -> str:
    """A PEP 3333 path (latin-1 string of raw bytes) as the percent-encoded target path."""
    return quote(wsgi_path.encode("latin-1"), safe=_PATH_SAFE)


def event_from_environ(environ: WSGIEnvironment, config: WSGIConfig = _DEFAULT_CONFIG) -> H3Event:
    """The ``H3Event`` for a WSGI request (``HTTPError(400)`` for a bad ``CONTENT_LENGTH``)."""
    headers = _environ_headers(environ)
    declared = environ.get("CONTENT_LENGTH") or ""
    length: int | None = 0
    if declared:
        if not declared.isdigit():
            raise HTTPError(400, f"invalid Content-Length {declared!r}")
        length = int(declared)
    elif environ.get("wsgi.input_terminated"):
        length = None
    scheme = environ.get("wsgi.url_scheme", "http")
    if "host" not in headers:
        # PEP 3333 "URL Reconstruction": SERVER_NAME, and the port unless the default.
        host = environ.get("SERVER_NAME", "localhost")
        port = environ.get("SERVER_PORT")
        if port and port != ("443" if scheme == "https" else "80"):
            host += ":" + port
        headers.append("host", host)
    path = _quote_path(environ.get("PATH_INFO") or "/")
    query = environ.get("QUERY_STRING", "")
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    if not target.startswith("/"):
        target = _quote_path(environ.get("SCRIPT_NAME", "")) + path
        if query:
            target += "?" + query
    protocol: str = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
    event = H3Event(
        environ["REQUEST_METHOD"],
        target,
        headers,
        path=path,
        http_version=protocol[5:] if protocol.startswith("HTTP/") else "1.1",
        remote_addr=environ.get("REMOTE_ADDR"),
        scheme=scheme,
        body=_WSGIBody(environ["wsgi.input"], length),
        max_body_size=config.max_body_size,
    )
    # The query string travels separately in WSGI; a RAW_URI target already carries it.
    event.query_string = query
    return event


def _status_line(status: int) -> str:
    return f"{status} {status_text(status) or 'Unknown'}"


class WSGIAdapter:
    """``app`` as a WSGI application with options: ``WSGIAdapter(app, max_body_size=...)``.

    Options are the fields of ``WSGIConfig`` (``WSGIOptions``), one by one, as a
    ``config``, or both (the keywords replace the config's fields); an unknown one is a
    ``TypeError`` here. ``app(environ, start_response)`` itself uses the defaults.
    """

    __slots__ = ("app", "config")

    def __init__(self, app: H3, *, config: WSGIConfig | None = None, **options: Unpack[WSGIOptions]) -> None:
        from .app import H3

        if not isinstance(app, H3):
            raise TypeError(f"WSGIAdapter serves an H3 app, got {app!r}")
        self.app = app
        if config is None:
            self.config = WSGIConfig(**options)
        elif not isinstance(config, WSGIConfig):
            raise TypeError(f"config must be a WSGIConfig, got {config!r}")
        else:
            self.config = dataclasses.replace(config, **options) if options else config

    def __repr__(self) -> str:
        return f"<WSGIAdapter {self.app!r}>"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return _serve(self.app, self.config, environ, start_response)


def serve_wsgi(app: H3, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Answer one WSGI request with *app* (what ``H3.__call__`` does)."""
    return _serve(app, _DEFAULT_CONFIG, environ, start_response)


def _serve(  # noqa: PLR0911 - one return per kind of response
    app: H3, config: WSGIConfig, environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    try:
        event = event_from_environ(environ, config)
    except HTTPError as exc:
        return _send_bytes(error_response(exc), environ.get("REQUEST_METHOD", "GET"), start_response)
    response = app.handle(event)
    method = event.method
    event.mark_head_sent()  # from here on, as on the native server, the head is fixed
    if isinstance(response, SSEResponse):
        start_response(_status_line(response.status), _wsgi_headers(response))
        if response.callback is None or method == "HEAD":
            return []
        return SSEIterable(
            event,
            response.callback,
            queue_size=config.sse_queue_size,
            send_timeout=config.sse_send_timeout,
            heartbeat=config.sse_heartbeat if response.heartbeat is None else response.heartbeat,
        )
    body = response.body
    if type(body) is bytes:
        return _send_bytes(response, method, start_response)
    assert not isinstance(body, bytes)
    status = response.status
    if status in NO_BODY_STATUSES or status < 200 or method == "HEAD":
        close_body(body)
        start_response(_status_line(status), _wsgi_headers(response))
        return []
    held = hold_head(body, event, app.debug)  # the head waits for the first piece
    if isinstance(held, Response):
        return _send_bytes(held, method, start_response)
    first, rest = held
    start_response(_status_line(status), _wsgi_headers(response))
    if first is None:
        close_body(body)
        return []
    return _HeldBody(first, rest, body)


def _wsgi_headers(response: Response) -> list[tuple[str, str]]:
    headers = [(name, value) for name, value in response.headers.items() if name not in _HOP_BY_HOP]
    length = getattr(response.body, "content_length", None)
    if length is not None:  # a streamed body that knows its length (a file)
        headers.append(("content-length", str(length)))
    return headers


def _send_bytes(response: Response, method: str, start_response: StartResponse) -> list[bytes]:
    """A response with a bytes body: framed by Content-Length, no body when none is due."""
    body = response.body
    assert type(body) is bytes
    status = response.status
    headers = _wsgi_headers(response)
    no_body = status in NO_BODY_STATUSES or status < 200
    if not no_body:
        headers.append(("content-length", str(len(body))))
    start_response(_status_line(status), headers)
    return [] if no_body or method == "HEAD" else [body]


class _HeldBody:
    """The first piece (pulled before the head was sent), then the rest; the WSGI
    server's ``close()`` reaches the handler's body."""

    __slots__ = ("_body", "_first", "_rest")

    def __init__(self, first: bytes, rest: Iterator[bytes], body: Iterable[bytes]) -> None:
        self._first: bytes | None = first
        self._rest = rest
        self._body = body

    def __iter__(self) -> _HeldBody:
        return self

    def __next__(self) -> bytes:
        first = self._first
        if first is not None:
            self._first = None
            return first
        return next(self._rest)

    def close(self) -> None:
        close_body(self._body)
