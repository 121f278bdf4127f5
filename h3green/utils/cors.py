"""Cross-origin resource sharing: ``app.use(cors(origin=...))`` or ``handle_cors(event)``.

Strategy: the options are checked and compiled once (``CORSOptions``); per request the
headers are *staged* on the event before the handler runs, so they survive into error
responses (a 404 or a 500 still tells the browser it may read the body). A preflight
(``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``, Fetch standard
§3.2.2) is answered at once with 204; other requests go on.

Rules kept everywhere: a refused origin gets no ``Access-Control-Allow-*`` header at all;
``Vary: Origin`` is sent whenever the answer depends on the origin, so a shared cache
never serves one origin's answer to another; credentials are never combined with ``*``
(the Fetch standard ignores ``*`` then, and reflecting any origin with credentials would
let every site act as the user): ``credentials=True`` needs an explicit origin, checked
when the options are made.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..datastructures import Headers
from ..response import Response

if TYPE_CHECKING:
    from ..event import H3Event

__all__ = ["CORSOptions", "cors", "handle_cors"]

#: What ``origin`` accepts: ``"*"``, one origin, a list of origins and compiled patterns
#: (matched in full), or ``fn(origin) -> bool``.
OriginSpec = str | re.Pattern[str] | Iterable[str | re.Pattern[str]] | Callable[[str], bool]


def _names(value: str | Iterable[str] | None, what: str) -> str | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or not item.strip() or any(c in item for c in "\r\n\x00"):
            raise ValueError(f"invalid {what} {item!r}")
    return ", ".join(item.strip() for item in items)


class CORSOptions:
    """Checked, precomputed CORS settings (what ``cors`` and ``handle_cors`` take)."""

    __slots__ = ("allow_headers", "credentials", "expose_headers", "max_age", "methods", "origin")

    def __init__(
        self,
        origin: OriginSpec = "*",
        *,
        methods: str | Iterable[str] = "*",
        allow_headers: str | Iterable[str] = "*",
        expose_headers: str | Iterable[str] | None = None,
        credentials: bool = False,
        max_age: int | None = None,
    ) -> None:
        self.origin: str | tuple[str | re.Pattern[str], ...] | Callable[[str], bool]
        if isinstance(origin, str):
            if origin != "*":
                _names(origin, "origin")
            self.origin = origin
        elif isinstance(origin, re.Pattern):
            self.origin = (origin,)
        elif callable(origin):
            self.origin = origin
        else:
            items = tuple(origin)
            for item in items:
                if not isinstance(item, str | re.Pattern):
                    raise TypeError(f"origins must be strings or compiled patterns, got {item!r}")
                if item == "*":
                    raise ValueError('"*" in a list of origins: pass origin="*" on its own')
            self.origin = items
        if credentials and self.origin == "*":
            raise ValueError(
                'credentials=True cannot be combined with origin="*": browsers ignore "*" with '
                "credentials, and allowing every origin would let any site act as the user; "
                "list the origins you trust"
            )
        if max_age is not None and max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        methods_value = _names(methods, "method")
        headers_value = _names(allow_headers, "header")
        assert methods_value is not None and headers_value is not None
        self.methods = methods_value
        self.allow_headers = headers_value
        self.expose_headers = _names(expose_headers, "header")
        self.credentials = credentials
        self.max_age = max_age

    @property
    def varies(self) -> bool:
        """Does the answer depend on the request's ``Origin``?"""
        return self.origin != "*"

    def allowed(self, origin: str) -> bool:
        spec = self.origin
        if spec == "*":
            return True
        if isinstance(spec, str):
            return origin == spec
        if isinstance(spec, tuple):
            for item in spec:
                if item == origin if isinstance(item, str) else item.fullmatch(origin) is not None:
                    return True
            return False
        return bool(spec(origin))

    def _allow_origin(self, origin: str) -> str:
        return "*" if self.origin == "*" else origin


def _add_vary(headers: Headers, name: str) -> None:
    """Add *name* to ``Vary`` (one header, no duplicates)."""
    current = [v.strip() for value in headers.getall("vary") for v in value.split(",") if v.strip()]
    if "*" in current or name.lower() in (v.lower() for v in current):
        return
    headers.set("vary", ", ".join([*current, name]))


def _is_preflight(event: H3Event) -> bool:
    headers = event.headers
    return event.method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


def _stage(event: H3Event, options: CORSOptions) -> bool:
    """Stage the CORS headers for *event*; True when it was a preflight (answered 204)."""
    staged = event.res.headers
    origin = event.headers.get("origin")
    if options.varies:
        _add_vary(staged, "Origin")
    preflight = _is_preflight(event)
    if origin is not None and options.allowed(origin):
        staged.set("access-control-allow-origin", options._allow_origin(origin))
        if options.credentials:
            staged.set("access-control-allow-credentials", "true")
        if preflight:
            methods = options.methods
            if methods == "*" and options.credentials:
                # Fetch: with credentials "*" is a literal method name, so name the one asked for.
                methods = event.headers.get("access-control-request-method", "")
            staged.set("access-control-allow-methods", methods)
            allow_headers = options.allow_headers
            if allow_headers == "*" and options.credentials:
                allow_headers = event.headers.get("access-control-request-headers", "")
                _add_vary(staged, "Access-Control-Request-Headers")
            if allow_headers:
                staged.set("access-control-allow-headers", allow_headers)
            if options.max_age is not None:
                staged.set("access-control-max-age", str(options.max_age))
        elif options.expose_headers:
            staged.set("access-control-expose-headers", options.expose_headers)
    if preflight:
        event.set_status(204)
    return preflight


def handle_cors(event: H3Event, options: CORSOptions | None = None, **settings: Any) -> bool:
    """CORS for one handler: stage the headers; True for a preflight (204 staged, the
    handler returns nothing). Settings as ``cors``; pass a ``CORSOptions`` made once to
    skip checking them on every request. The route must also receive ``OPTIONS``
    (``app.all`` or an ``app.options`` route) for preflights to reach it."""
    if options is None:
        options = CORSOptions(**settings)
    elif settings:
        raise TypeError("pass either a CORSOptions or settings, not both")
    return _stage(event, options)


def cors(
    origin: OriginSpec = "*",
    *,
    methods: str | Iterable[str] = "*",
    allow_headers: str | Iterable[str] = "*",
    expose_headers: str | Iterable[str] | None = None,
    credentials: bool = False,
    max_age: int | None = None,
) -> Callable[[H3Event, Callable[[], Response]], Response | None]:
    """CORS middleware for ``app.use(cors(...))``; a bad setting raises here, at start-up."""
    options = CORSOptions(
        origin,
        methods=methods,
        allow_headers=allow_headers,
        expose_headers=expose_headers,
        credentials=credentials,
        max_age=max_age,
    )

    def cors_middleware(event: H3Event, next: Callable[[], Response]) -> Response | None:
        if _stage(event, options):
            return Response(None, 204)  # the routes never see a preflight
        response = next()
        if options.varies and "vary" in response.headers:
            # The response's own Vary (say, Accept-Encoding) replaces the staged one.
            _add_vary(response.headers, "Origin")
        return response

    return cors_middleware
