"""``H3``: routes, middleware, hooks and mounts, turned into one ``handle(event)`` call.

Strategy: registration builds a router and a list of middleware; the first request (or
``freeze()``) composes the middleware into one chain of closures around the router
dispatch, so no per-request work goes into assembling it. ``handle`` never raises for
anything a handler did: an ``HTTPError`` becomes its status, anything else a logged 500.

Middleware sees every response: what a middleware calls as ``next()`` is guarded, so a
404, a 405, an ``HTTPError`` or an unhandled exception below it comes back as the error
``Response`` (the ``on_error`` hooks have already seen the exception), ready for the
middleware to decorate. The guard is only put under a middleware: an app without any
pays nothing for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from ._json import JSONDefault, json_dumps, make_json_dumps
from .errors import HTTPError
from .event import H3Event
from .response import Response, SSEResponse, error_response, merge_staged, to_response
from .router import METHOD_TOKEN, InvalidPath, Router, normalize_path

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["H3", "Handler", "Middleware", "Mountable"]

logger = logging.getLogger("h3green")

Handler = Callable[[H3Event], Any]
Next = Callable[[], Response]
Middleware = Callable[[H3Event, Next], Any]
RequestHook = Callable[[H3Event], object]
ResponseHook = Callable[[H3Event, Response], object]
ErrorHook = Callable[[BaseException, H3Event], object]
Chain = Callable[[H3Event], Response]

H = TypeVar("H", bound=Handler)


def _as_list(hooks: Any) -> list[Any]:
    if hooks is None:
        return []
    if callable(hooks):
        return [hooks]
    return list(hooks)


class H3:
    """An application: ``app = H3()``, then ``@app.get("/path")`` handlers.

    Hooks (a callable or a list of them): ``on_request(event)`` before routing,
    ``on_response(event, response)`` after (it may return a replacement ``Response``),
    ``on_error(error, event)`` when a handler, middleware or hook raised. A failing
    ``on_response``/``on_error`` hook is logged, not fatal. ``debug=True`` puts the
    traceback of unhandled errors in the 500 body (never do that in production).
    ``json_default(value)`` turns a value the built-in JSON encoding does not know (see
    ``h3green._json``) into one it does, for what this app's handlers and middleware
    return; it raises ``TypeError`` for values it does not handle either.
    """

    def __init__(
        self,
        *,
        on_request: RequestHook | Iterable[RequestHook] | None = None,
        on_response: ResponseHook | Iterable[ResponseHook] | None = None,
        on_error: ErrorHook | Iterable[ErrorHook] | None = None,
        debug: bool = False,
        json_default: JSONDefault | None = None,
    ) -> None:
        if json_default is not None and not callable(json_default):
            raise TypeError(f"json_default must be callable, got {json_default!r}")
        self.router: Router[Handler] = Router()
        self.debug = debug
        self.json_default = json_default
        self._json_dumps = json_dumps if json_default is None else make_json_dumps(json_default)
        self.on_request: list[RequestHook] = _as_list(on_request)
        self.on_response: list[ResponseHook] = _as_list(on_response)
        self.on_error: list[ErrorHook] = _as_list(on_error)
        self._middleware: list[Middleware] = []
        self._chain: Chain | None = None
        # Debug lines for each request, decided once by freeze(): the hot path tests one
        # attribute rather than asking logging. A mounted app leaves them to its parent.
        self._log_requests = False
        self._mounted = False

    def __repr__(self) -> str:
        return f"<H3 routes={len(self.router.routes())} middleware={len(self._middleware)}>"

    @property
    def routes(self) -> list[tuple[str, str]]:
        """``(method, pattern)`` for every route, in registration order (``"*"`` for any
        method; a mount shows as its prefix and ``prefix/**``)."""
        return self.router.routes()

    # -- registration --------------------------------------------------------------------

    def _on(self, method: str, path: str, handler: H | None) -> H | Callable[[H], H]:
        return self.on(method, path) if handler is None else self.on(method, path, handler)

    @overload
    def on(self, method: str, path: str) -> Callable[[H], H]: ...
    @overload
    def on(self, method: str, path: str, handler: H) -> H: ...
    def on(self, method: str, path: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Route *method* (or ``"*"`` for any) on *path* to *handler*; also a decorator."""
        method = method.upper()
        if method != "*" and METHOD_TOKEN.fullmatch(method) is None:
            raise ValueError(f"invalid HTTP method {method!r}")

        def register(func: H) -> H:
            if not callable(func):
                raise TypeError(f"handler for {method} {path} must be callable, got {func!r}")
            self.router.add(method, path, func)
            return func

        return register if handler is None else register(handler)

    @overload
    def get(self, path: str) -> Callable[[H], H]: ...
    @overload
    def get(self, path: str, handler: H) -> H: ...
    def get(self, path: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Route GET on *path* to *handler*; also a decorator."""
        return self._on("GET", path, handler)

    @overload
    def post(self, path: str) -> Callable[[H], H]: ...
    @overload
    def post(self, path: str, handler: H) -> H: ...
    def post(self, path: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Route POST on *path* to *handler*; also a decorator."""
        return self._on("POST", path, handler)

    @overload
    def put(self, path: str) -> Callable[[H], H]: ...
    @overload
    def put(self, path: str, handler: H) -> H: ...
    def put(self, path: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Route PUT on *path* to *handler*; also a decorator."""
        return self._on("PUT", path, handler)

    @overload
    def patch(self, path: str) -> Callable[[H], H]: ...
    @overload
    def patch(self, path: str, handler: H) -> H: ...
    def patch(self, path: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Route PATCH on *path* to *handler*; also a decorator."""
        return self._on("PATCH", path, handler)

    @overload
    def delete(self, path: str) -> Callable[[H], H]: ...
    @overload
    def delete(self, path: str, handler: H) -> H: ...
    def delete(self, path: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Route DELETE on *path* to *handler*; also a decorator."""
        return self._on("DELETE", path, handler)

    @overload
    def options(self, path: str) -> Callable[[H], H]: ...
    @overload
    def options(self, path: str, handler: H) -> H: ...
    def options(self, path: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Route OPTIONS on *path* to *handler*; also a decorator."""
        return self._on("OPTIONS", path, handler)

    @overload
    def head(self, path: str) -> Callable[[H], H]: ...
    @overload
    def head(self, path: str, handler: H) -> H: ...
    def head(self, path: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Route HEAD on *path* to *handler*; also a decorator."""
        return self._on("HEAD", path, handler)

    @overload
    def all(self, path: str) -> Callable[[H], H]: ...
    @overload
    def all(self, path: str, handler: H) -> H: ...
    def all(self, path: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Route every method on *path* to *handler*; also a decorator."""
        return self._on("*", path, handler)

    def use(self, middleware: Middleware) -> Middleware:
        """Add ``middleware(event, next)``; also usable as a decorator.

        It may return a value (short-circuit: the rest of the chain does not run), or call
        ``next()`` and work with the ``Response`` it returns. Returning None means "carry
        on": the response of ``next()`` is used, and ``next()`` is called for you if the
        middleware did not call it.
        """
        if not callable(middleware):
            raise TypeError(f"middleware must be callable, got {middleware!r}")
        self._middleware.append(middleware)
        self._chain = None
        return middleware

    def mount(self, prefix: str, app: H3 | Mountable | WSGIApplication, *, header_map: str = "drop") -> None:
        """Serve *app* under *prefix*: another ``H3``, any object with a ``handle(event)``
        method returning a ``Response`` (``h3green.utils.StaticFiles``), or any WSGI
        application. ``H3`` apps and ``handle`` objects see the path without the prefix.

        ``header_map`` (WSGI apps only): what becomes of request headers whose names hold
        an underscore, ``"drop"``, ``"refuse"`` (400) or ``"dangerous"``; see
        ``h3green.wsgi_mount.WSGIMount``."""
        prefix = "/" + prefix.strip("/")
        if prefix == "/":
            raise ValueError("mount prefix must not be the root; register routes instead")
        if any(segment[:1] in (":", "*") for segment in prefix.split("/")):
            # The mounted app sees the path with the prefix cut off by length, which only
            # a static prefix makes well-defined.
            raise ValueError(f"mount prefix must be static, got {prefix!r}")
        handler: Handler
        if isinstance(app, H3) or callable(getattr(app, "handle", None)):
            if header_map != "drop":
                raise ValueError("header_map applies to mounted WSGI applications only")
            handler = _MountedH3(app, prefix)  # type: ignore[arg-type]
            if isinstance(app, H3):
                app._mounted = True
        elif callable(app):
            from .wsgi_mount import WSGIMount

            handler = WSGIMount(app, prefix, header_map=header_map)
        else:
            raise TypeError(f"cannot mount {app!r}: not an H3 app nor a WSGI callable")
        self.router.add("*", prefix, handler)
        self.router.add("*", prefix + "/**", handler)

    # -- handling ------------------------------------------------------------------------

    def freeze(self) -> None:
        """Compose the middleware chain now (done on the first request otherwise).

        Whether each request is logged at DEBUG on logger ``h3green`` is decided here too,
        from the level logging has then (servers freeze their app when they start).
        """
        self._log_requests = not self._mounted and logger.isEnabledFor(logging.DEBUG)
        chain: Chain = self._dispatch
        for middleware in reversed(self._middleware):
            chain = _layer(middleware, self._guard(chain), self._json_dumps)
        self._chain = chain

    def _guard(self, downstream: Chain) -> Chain:
        """*downstream* with its errors turned into error responses, for the middleware
        above it: ``next()`` then always returns a ``Response`` to decorate."""

        def guarded(event: H3Event) -> Response:
            try:
                return downstream(event)
            except HTTPError as exc:
                self._notify_error(exc, event)
                return error_response(exc)
            except Exception as exc:
                return self._unhandled(exc, event)

        return guarded

    def _unhandled(self, exc: Exception, event: H3Event) -> Response:
        """Log *exc* once (type, request and route in the line) and make the 500."""
        # The route is looked up again here, on the error path, so that matching on the
        # hot path carries nothing for the log's sake.
        pattern = self.router.match(event.method, event.path).pattern
        logger.exception(
            "unhandled error in %s %s (route %s): %s: %s",
            event.method,
            event.target,
            pattern or "-",
            type(exc).__name__,
            exc,
        )
        response = error_response(None, self.debug)
        self._notify_error(exc, event)
        return response

    def _dispatch(self, event: H3Event) -> Response:
        if event.path == "*":
            # RFC 9110 §9.3.7: "OPTIONS *" asks about the server as a whole, not a resource.
            methods = {method for method, _ in self.router.routes() if method != "*"}
            if "GET" in methods:
                methods.add("HEAD")
            return Response(None, 204, {"allow": ", ".join(sorted({*methods, "OPTIONS"}))})
        match = self.router.match(event.method, event.path)
        handler = match.handler
        if handler is None:
            allowed = match.allowed
            if not allowed:
                raise HTTPError(404, f"Cannot find any route matching {event.path}")
            allow = ", ".join(sorted({*allowed, "OPTIONS"}))
            if event.method == "OPTIONS":
                return Response(None, 204, {"allow": allow})
            raise HTTPError(405, f"Method {event.method} is not allowed", headers={"allow": allow})
        event.params = match.params
        return to_response(handler(event), event, self._json_dumps)

    def handle(self, event: H3Event) -> Response:
        """Run hooks, middleware and the matching handler; always returns a response."""
        chain = self._chain
        if chain is None:
            self.freeze()
            chain = self._chain
            assert chain is not None
        if self._log_requests:
            logger.debug("request %s %s from %s", event.method, event.target, event.remote_addr or "-")
        try:
            if event.path != "*" or event.method != "OPTIONS":
                try:
                    event.path = normalize_path(event.path)
                except InvalidPath as exc:
                    raise HTTPError(400, str(exc)) from None
            for hook in self.on_request:
                hook(event)
            response = chain(event)
        except HTTPError as exc:
            response = error_response(exc)
            self._notify_error(exc, event)
        except Exception as exc:
            response = self._unhandled(exc, event)
        for response_hook in self.on_response:
            try:
                replacement = response_hook(event, response)
            except Exception:
                logger.exception("on_response hook %r failed", response_hook)
            else:
                if isinstance(replacement, Response):
                    response = replacement
        event.close_form()  # uploads (and their temporary files) end with the handling
        if self._log_requests:
            logger.debug(
                "request %s %s answered %d%s",
                event.method,
                event.target,
                response.status,
                " (event stream follows)" if isinstance(response, SSEResponse) else "",
            )
        return merge_staged(response, event)

    def _notify_error(self, exc: BaseException, event: H3Event) -> None:
        for hook in self.on_error:
            try:
                hook(exc, event)
            except Exception:
                logger.exception("on_error hook %r failed", hook)

    # -- WSGI ----------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Every ``H3`` app is a WSGI application."""
        from .wsgi_adapter import serve_wsgi

        body: Iterable[bytes] = serve_wsgi(self, environ, start_response)
        return body


def _layer(middleware: Middleware, downstream: Chain, dumps: Callable[[Any], bytes]) -> Chain:
    """One middleware around *downstream* (which never raises: see ``H3._guard``)."""

    def run(event: H3Event) -> Response:
        called = False
        response: Response | None = None

        def call_next() -> Response:
            nonlocal called, response
            if called:
                raise RuntimeError("next() may be called only once per middleware")
            called = True
            response = downstream(event)
            return response

        value = middleware(event, call_next)
        if value is not None:
            # The Response from next() goes back up as it is (even an error answer to a
            # handler that had called start_sse()).
            if value is not response:
                value = to_response(value, event, dumps)
            return value  # type: ignore[no-any-return]
        if not called:
            return call_next()
        assert response is not None  # set by call_next(), which never raises past its guard
        return response

    return run


class Mountable(Protocol):
    """What ``H3.mount`` accepts besides apps: an object that answers an event."""

    def handle(self, event: H3Event) -> Response: ...


class _MountedH3:
    """Hands requests under a prefix to another ``H3`` app (or any ``Mountable``), with
    the prefix stripped."""

    __slots__ = ("app", "prefix")

    def __init__(self, app: Mountable, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    def __call__(self, event: H3Event) -> Response:
        path = event.path
        event.path = path[len(self.prefix) :] or "/"
        try:
            return self.app.handle(event)
        finally:
            event.path = path
