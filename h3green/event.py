"""``H3Event``: everything a handler gets, one object per request.

The request side is a read-only view (method, path, query, params, headers, body readers);
the response side is *staged* on ``event.res`` (status and headers) and merged into
whatever the handler returns. Nothing here touches a socket: the body comes from a
``BodySource`` the server (or the WSGI adapter, or the test client) plugs in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from .cookies import delete_cookie_header, parse_cookie_header, set_cookie_header
from .datastructures import Headers, QueryParams
from .errors import HTTPError, ResponseAlreadySent, SSEAlreadyStarted
from .response import check_status

if TYPE_CHECKING:
    from .sse import SSEWriter
    from .utils.multipart import FormData

__all__ = ["BodySource", "H3Event", "StagedResponse", "StreamCallback"]

StreamCallback = Callable[["SSEWriter"], object]

# RFC 9112 §3.2.2 absolute-form, RFC 3986 §3: scheme "://" [userinfo "@"] host [":" port]
# and the path; the host a reg-name or an IP literal.
_ABSOLUTE_FORM = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://"
    r"(?:[A-Za-z0-9._~!$&'()*+,;=:%-]*@)?"
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)"
    r"(?::[0-9]*)?"
    r"(/.*)?",
    re.DOTALL,
)

#: Default request-body limit: 1 MiB, like nginx's client_max_body_size.
DEFAULT_MAX_BODY_SIZE = 1024 * 1024


class BodySource(Protocol):
    """Where request-body bytes come from (a connection, ``wsgi.input``, a test)."""

    def read(self) -> bytes:
        """The next piece of the body, ``b""`` once it is complete."""


class _EmptyBody:
    __slots__ = ()

    def read(self) -> bytes:
        return b""


_EMPTY_BODY = _EmptyBody()


class StagedResponse:
    """Status and headers a handler (or middleware) sets before returning a value."""

    __slots__ = ("_status", "headers")

    def __init__(self) -> None:
        self._status: int | None = None
        self.headers = Headers()

    @property
    def status(self) -> int | None:
        """The staged status (None: the return value's, or 200)."""
        return self._status

    @status.setter
    def status(self, status: int | None) -> None:
        # Checked like ``H3Event.set_status``: a bad status fails where it is set.
        if status is not None:
            check_status(status)
        self._status = status


class H3Event:
    """One HTTP request and its staged response."""

    __slots__ = (
        "_body",
        "_body_cache",
        "_body_started",
        "_context",
        "_cookies",
        "_form",
        "_head_sent",
        "_query",
        "_res",
        "_sse",
        "_sse_heartbeat",
        "_stream_callback",
        "headers",
        "http_version",
        "max_body_size",
        "method",
        "params",
        "path",
        "query_string",
        "remote_addr",
        "scheme",
        "target",
    )

    def __init__(  # noqa: PLR0913 - keyword-only request fields, set by the server, WSGI and tests
        self,
        method: str,
        target: str,
        headers: Headers,
        *,
        path: str | None = None,
        http_version: str = "1.1",
        remote_addr: str | None = None,
        scheme: str = "http",
        body: BodySource | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        self.method = method
        if "#" in target:
            # RFC 9112 §3.2: a request target has no fragment (a client keeps it to
            # itself); one sent anyway is dropped, as nginx does, not read as query text.
            target = target.partition("#")[0]
        #: The request target as sent (path and query, not decoded; without a fragment).
        self.target = target
        raw_path, _, self.query_string = target.partition("?")
        if raw_path[:1] != "/" and "://" in raw_path:
            # RFC 9112 §3.2.2: "a server MUST accept the absolute-form in requests" (what
            # clients send to a proxy); the authority is not part of the routing path. A
            # malformed one keeps its raw path, which routing refuses (400).
            absolute = _ABSOLUTE_FORM.fullmatch(raw_path)
            if absolute is not None:
                raw_path = absolute.group(1) or "/"
        #: The decoded, canonical path used for routing (set by the app).
        self.path = raw_path if path is None else path
        self.headers = headers
        self.http_version = http_version
        self.remote_addr = remote_addr
        self.scheme = scheme
        #: Route parameters (``/users/:id`` gives ``params["id"]``).
        self.params: dict[str, str] = {}
        # PERF: the staged response (a StagedResponse and its Headers) and the context
        # dict are made on first use, as most requests stage nothing; see response.py's
        # _plain for the figure.
        self._context: dict[str, Any] | None = None
        self._res: StagedResponse | None = None
        self.max_body_size = max_body_size
        self._body: BodySource = body if body is not None else _EMPTY_BODY
        self._body_cache: bytes | None = None
        self._body_started = False
        self._query: QueryParams | None = None
        self._cookies: dict[str, str] | None = None
        self._form: FormData | None = None
        self._sse = False
        self._sse_heartbeat: float | None = None
        self._stream_callback: StreamCallback | None = None
        self._head_sent = False

    def __repr__(self) -> str:
        return f"<H3Event {self.method} {self.target}>"

    @property
    def context(self) -> dict[str, Any]:
        """Free space for middleware and handlers to share per-request values."""
        context = self._context
        if context is None:
            context = self._context = {}
        return context

    @property
    def res(self) -> StagedResponse:
        """The staged response: status and headers merged into what the handler returns."""
        res = self._res
        if res is None:
            res = self._res = StagedResponse()
        return res

    # -- request view --------------------------------------------------------------------

    @property
    def query(self) -> QueryParams:
        """Query parameters, multi-valued (``query.getall("tag")``)."""
        if self._query is None:
            self._query = QueryParams.parse(self.query_string)
        return self._query

    def get_query(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter *name*, or *default*."""
        return self.query.get(name, default)

    @property
    def host(self) -> str:
        return self.headers.get("host") or "localhost"

    @property
    def url(self) -> str:
        """The full request URL as the client addressed it."""
        return f"{self.scheme}://{self.host}{self.target}"

    # -- body readers --------------------------------------------------------------------

    def iter_body(self) -> Iterator[bytes]:
        """Yield the request body piece by piece as it arrives, enforcing ``max_body_size``.

        Raises ``HTTPError(413)`` as soon as the body is known to be too large, without
        reading the rest of it.
        """
        if self._body_cache is not None:
            if self._body_cache:
                yield self._body_cache
            return
        if self._body_started:
            raise RuntimeError("the request body was already consumed by iter_body()")
        self._body_started = True
        limit = self.max_body_size
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, f"request body exceeds {limit} bytes")
        received = 0
        read = self._body.read
        while data := read():
            received += len(data)
            if received > limit:
                raise HTTPError(413, f"request body exceeds {limit} bytes")
            yield data

    def read_body(self) -> bytes:
        """The whole request body (read once, then cached)."""
        if self._body_cache is None:
            self._body_cache = b"".join(self.iter_body())
        return self._body_cache

    def read_text(self) -> str:
        """The body decoded with the charset of its Content-Type (UTF-8 by default)."""
        charset = "utf-8"
        for param in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.read_body().decode(charset)
        except (UnicodeDecodeError, LookupError):
            raise HTTPError(400, f"request body is not valid {charset} text") from None

    def read_json(self) -> Any:
        """The body parsed as JSON; a malformed or empty body is a 400."""
        body = self.read_body()
        if not body.strip():
            raise HTTPError(400, "request body is empty, expected JSON")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"invalid JSON in request body: {exc}") from None

    def read_form(self, *, max_size: int | None = None, **limits: Any) -> FormData:
        """A form body (``application/x-www-form-urlencoded`` or ``multipart/form-data``)
        as multi-valued fields: text as ``str``, files as ``h3green.utils.UploadFile``.

        ``max_size`` replaces ``max_body_size`` for this request, so an upload route can
        take more than a JSON one. *limits* are those of ``h3green.utils.parse_multipart``
        (``max_parts``, ``max_field_size``, ``max_file_size``, ``spool_size``). Uploads
        are closed, and their temporary files removed, when the request's handling ends.
        Read once, then cached.
        """
        from .utils.multipart import FormData, parse_multipart

        if self._form is not None:
            return self._form
        if max_size is not None and not self._body_started:
            if max_size < 0:
                raise ValueError(f"max_size must be >= 0, got {max_size}")
            self.max_body_size = max_size
        ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            self._form = parse_multipart(self, **limits)
            return self._form
        if ctype and ctype != "application/x-www-form-urlencoded":
            raise HTTPError(415, f"expected a form body, got {ctype}")
        self._form = FormData(QueryParams.parse(self.read_text()).items())
        return self._form

    # -- staged response -----------------------------------------------------------------

    def mark_head_sent(self) -> None:
        """The server put the response head on the wire: the staged response is fixed."""
        self._head_sent = True

    def _check_not_sent(self) -> None:
        if self._head_sent:
            raise ResponseAlreadySent("the response head was already sent")

    def set_header(self, name: str, value: str) -> None:
        """Set a response header, replacing earlier values of *name*."""
        self._check_not_sent()
        self.res.headers.set(name, value)

    def append_header(self, name: str, value: str) -> None:
        """Add a response header, keeping earlier values of *name* (``Set-Cookie``)."""
        self._check_not_sent()
        self.res.headers.append(name, value)

    def set_status(self, status: int) -> None:
        self._check_not_sent()
        self.res.status = status  # checked by the setter

    # -- cookies -------------------------------------------------------------------------

    @property
    def cookies(self) -> dict[str, str]:
        """The request's cookies (every ``Cookie`` header; the first of a name wins)."""
        if self._cookies is None:
            self._cookies = parse_cookie_header("; ".join(self.headers.getall("cookie")))
        return self._cookies

    def get_cookie(self, name: str, default: str | None = None) -> str | None:
        return self.cookies.get(name, default)

    def set_cookie(self, name: str, value: str, **attributes: Any) -> None:
        """Add a ``Set-Cookie`` header; *attributes* as ``h3green.cookies.set_cookie_header``
        (``max_age``, ``expires``, ``path="/"``, ``domain``, ``secure``, ``httponly``,
        ``samesite="lax"``, ``partitioned``). Invalid names or values raise ``ValueError``."""
        self.append_header("set-cookie", set_cookie_header(name, value, **attributes))

    def delete_cookie(self, name: str, *, path: str | None = "/", domain: str | None = None) -> None:
        """Tell the browser to drop cookie *name* (match the path and domain it was set with)."""
        self.append_header("set-cookie", delete_cookie_header(name, path=path, domain=domain))

    # -- Server-Sent Events --------------------------------------------------------------

    def start_sse(
        self,
        status: int = 200,
        headers: dict[str, str] | None = None,
        *,
        heartbeat: float | None = None,
    ) -> None:
        """Make this response an event stream (``text/event-stream``, no caching).

        ``heartbeat`` overrides the server's ``sse_heartbeat`` for this stream (seconds of
        idleness before a comment is sent; 0 turns it off).
        """
        if self._sse:
            raise SSEAlreadyStarted("start_sse() was already called for this request")
        self._check_not_sent()
        self._sse = True
        self._sse_heartbeat = heartbeat
        self.set_status(status)
        res_headers = self.res.headers
        res_headers.set("content-type", "text/event-stream; charset=utf-8")
        res_headers.set("cache-control", "no-cache")
        # nginx buffers proxied responses unless told not to; events must flow at once.
        res_headers.set("x-accel-buffering", "no")
        if headers:
            for name, value in headers.items():
                res_headers.set(name, value)

    def set_stream_callback(self, callback: StreamCallback) -> None:
        """Run ``callback(writer)`` in its own greenlet once the stream's head is sent."""
        if not self._sse:
            raise RuntimeError("call event.start_sse() before event.set_stream_callback()")
        if not callable(callback):
            raise TypeError(f"stream callback must be callable, got {callback!r}")
        self._check_not_sent()
        self._stream_callback = callback

    @property
    def is_sse(self) -> bool:
        return self._sse

    @property
    def stream_callback(self) -> StreamCallback | None:
        """The callback given to ``set_stream_callback`` (None until then)."""
        return self._stream_callback

    @property
    def sse_heartbeat(self) -> float | None:
        """The ``heartbeat`` given to ``start_sse`` (None: the server's ``sse_heartbeat``)."""
        return self._sse_heartbeat

    def close_form(self) -> None:
        """Close a form read by ``read_form`` (uploads and their temporary files); the
        app calls it when the request's handling ends."""
        if self._form is not None:
            self._form.close()
