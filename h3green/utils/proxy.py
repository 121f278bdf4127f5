"""A streaming reverse proxy: ``return proxy_request(event, "http://upstream:8000/path")``.

Strategy: the upstream request goes out through urllib3 (the ``h3green[proxy]`` extra),
a well-kept client with connection pooling and exact timeouts. Plain-HTTP upstream
connections are made with gevent's cooperative socket whether or not the process is
monkey patched, so a proxied request never stalls the loop (HTTPS upstreams rely on
monkey patching, which ``python -m h3green`` and gunicorn's workers apply).

* The request body streams up as the client sends it (``event.iter_body()``, so
  ``max_body_size`` holds); the response body streams down as it arrives, one
  ``read1`` (at most 64 KiB) at a time: memory per proxied request is bounded, nothing is
  buffered whole.
* Hop-by-hop headers (RFC 9110 §7.6.1: ``Connection`` and the fields it names,
  ``Keep-Alive``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``)
  are removed both ways; every upstream ``Set-Cookie`` is kept; a ``Location`` that points
  at the upstream's origin is rewritten to the proxy's. ``xfwd=True`` adds
  ``X-Forwarded-For``/``-Proto``/``-Host``.
* No connection (refused, unresolvable, reset) is a 502, no answer within ``timeout`` a
  504; the client learns nothing about the upstream's address or the error (the log does).
* An upstream ``text/event-stream`` is relayed through h3green's own SSE machinery: the
  head goes out with ``event.start_sse()``, and a stream callback copies whole lines as
  they arrive (no added buffering: a partial line waits only for its own end, so a
  heartbeat of this server can never land inside an upstream line). When the client
  leaves, the server's stream watch notices at once and kills the callback greenlet; its
  ``finally`` closes the upstream connection, so the upstream sees its client go within
  the same loop iteration rather than at its next write.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from gevent import socket as gsocket

from ..errors import HTTPError
from ..response import Response

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse, PoolManager

    from ..event import H3Event
    from ..sse import SSEWriter

__all__ = ["proxy_request"]

logger = logging.getLogger("h3green")

#: Most bytes read from the upstream at once (one ``read1``): the memory bound per request.
READ_SIZE: Final = 64 * 1024
#: A line of an upstream event stream longer than this is passed on unfinished.
MAX_SSE_LINE: Final = 64 * 1024
#: Idle upstream connections kept per upstream host by the default pool.
POOL_SIZE: Final = 64

_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "te", "trailer", "trailers", "transfer-encoding", "upgrade"}
)
# Not forwarded up: urllib3 sets Host from the target, and this server already answered
# any 100-continue itself (lazily, when the body is read).
_NOT_FORWARDED: Final = frozenset({"host", "expect"})
# Not passed down: the server frames the body it relays itself.
_NOT_RELAYED: Final = frozenset({"content-length"})
_NO_BODY: Final = frozenset({204, 304})
# Set by start_sse(); the upstream's own values replace them rather than repeat them.
_SSE_HEADERS: Final = frozenset({"content-type", "cache-control", "x-accel-buffering"})


def _urllib3() -> Any:
    try:
        import urllib3
    except ImportError:
        raise RuntimeError("proxy_request needs the urllib3 package: pip install 'h3green[proxy]'") from None
    return urllib3


def _hop_by_hop(headers: Iterable[tuple[str, str]]) -> set[str]:
    """The hop-by-hop names for one message: the fixed set plus what Connection names."""
    names = set(_HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == "connection":
            names.update(token.strip().lower() for token in value.split(","))
    return names


def _end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs = list(headers)
    drop = _hop_by_hop(pairs)
    return [(k, v) for k, v in pairs if k.lower() not in drop and not k.lower().startswith("proxy-")]


_managers: dict[str, Any] = {}


def _green_manager() -> PoolManager:
    """The shared pool: plain-HTTP connections on gevent sockets (see the docstring)."""
    manager = _managers.get("default")
    if manager is not None:
        return manager  # type: ignore[no-any-return]
    urllib3 = _urllib3()
    from urllib3.connection import HTTPConnection
    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    class GreenConnection(HTTPConnection):
        # _new_conn is where urllib3 2's HTTPConnection opens its socket, and only that:
        # everything else (framing, timeouts, keep-alive) stays urllib3's own.
        def _new_conn(self) -> socket.socket:
            timeout = self.timeout if isinstance(self.timeout, int | float) else None
            try:
                sock = gsocket.create_connection((self.host, self.port), timeout, self.source_address)
            except socket.gaierror as exc:
                raise NameResolutionError(self.host, self, exc) from exc
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"connecting to {self.host} timed out") from exc
            except OSError as exc:
                raise NewConnectionError(self, f"failed to connect: {exc}") from exc
            for option in self.socket_options or ():
                sock.setsockopt(*option)
            return sock  # type: ignore[no-any-return]

    class GreenPool(HTTPConnectionPool):
        ConnectionCls = GreenConnection

    manager = urllib3.PoolManager(num_pools=32, maxsize=POOL_SIZE, block=False)
    manager.pool_classes_by_scheme = {**manager.pool_classes_by_scheme, "http": GreenPool}
    _managers["default"] = manager
    return manager  # type: ignore[no-any-return]


def _request_headers(
    event: H3Event,
    headers: Mapping[str, str] | None,
    forward_headers: Iterable[str] | None,
    xfwd: bool,
) -> dict[str, str]:
    allowed = None if forward_headers is None else {name.lower() for name in forward_headers}
    out: dict[str, str] = {}
    for name, value in _end_to_end(event.headers.items()):
        if name in _NOT_FORWARDED or (
            allowed is not None and name not in allowed and name != "content-length"
        ):
            continue
        # RFC 9110 §5.3: repeated fields combine with commas (Cookie with "; ", RFC 6265 §5.4).
        joiner = "; " if name == "cookie" else ", "
        out[name] = f"{out[name]}{joiner}{value}" if name in out else value
    if xfwd:
        client = event.remote_addr or "unknown"
        previous = out.get("x-forwarded-for")
        out["x-forwarded-for"] = f"{previous}, {client}" if previous else client
        out["x-forwarded-proto"] = event.scheme
        out["x-forwarded-host"] = event.host
    if headers:
        for name, value in headers.items():
            out[name.lower()] = value
    return out


def _has_body(event: H3Event) -> bool:
    length = event.headers.get("content-length")
    return "transfer-encoding" in event.headers or (length is not None and length != "0")


def _upstream_error(exc: Exception, target: str) -> HTTPError:
    urllib3 = _urllib3()
    errors = urllib3.exceptions
    reason = exc.reason if isinstance(exc, errors.MaxRetryError) and exc.reason is not None else exc
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2: test it first.
    if isinstance(reason, errors.NewConnectionError | errors.NameResolutionError) or not isinstance(
        reason, errors.TimeoutError
    ):
        logger.warning("proxy: upstream %s unreachable: %s", target, reason)
        return HTTPError(502, "Bad Gateway: the upstream server could not be reached")
    logger.warning("proxy: upstream %s timed out: %s", target, reason)
    return HTTPError(504, "Gateway Timeout: the upstream server did not answer in time")


class _UpstreamBody:
    """The upstream response body as the server's streamed-body iterable."""

    __slots__ = ("_done", "_upstream")

    def __init__(self, upstream: BaseHTTPResponse) -> None:
        self._upstream = upstream
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        read1 = self._upstream.read1
        while data := read1(READ_SIZE):
            yield data
        self._done = True

    def close(self) -> None:
        # A body read to its end leaves a connection fit for reuse; anything else (the
        # client left, an error) does not.
        if self._done:
            self._upstream.release_conn()
        else:
            self._upstream.close()


class _SSERelay:
    """The stream callback that copies an upstream event stream line by line."""

    __slots__ = ("_upstream",)

    def __init__(self, upstream: BaseHTTPResponse) -> None:
        self._upstream = upstream

    def __call__(self, writer: SSEWriter) -> None:
        upstream = self._upstream
        errors = _urllib3().exceptions
        pending = b""
        try:
            while data := upstream.read1(READ_SIZE):
                pending += data
                # Up to the last line break, but not a final CR: it may be half a CRLF.
                cut = max(pending.rfind(b"\n"), pending.rfind(b"\r", 0, len(pending) - 1)) + 1
                if len(pending) - cut > MAX_SSE_LINE:
                    cut = len(pending)
                if cut:
                    writer.send_raw(pending[:cut])
                    pending = pending[cut:]
            if pending:
                writer.send_raw(pending)
        except (errors.HTTPError, OSError) as exc:
            # The upstream went quiet for longer than the timeout, or broke off.
            logger.info("proxy: upstream event stream ended: %s", exc)
        finally:
            # Also reached when the server kills this greenlet because the client left:
            # closing the socket is what tells the upstream its client is gone.
            upstream.close()


def _location(value: str, target: str, event: H3Event) -> str:
    urllib3 = _urllib3()
    parsed = urllib3.util.parse_url(target)
    origin = f"{parsed.scheme}://{parsed.netloc}"
    if value.startswith(origin) and value[len(origin) : len(origin) + 1] in ("", "/", "?", "#"):
        return f"{event.scheme}://{event.host}{value[len(origin) :]}"
    return value


def proxy_request(  # noqa: PLR0913 - documented keyword-only options
    event: H3Event,
    target: str,
    *,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
    forward_headers: Iterable[str] | None = None,
    xfwd: bool = False,
    pool: PoolManager | None = None,
) -> Response | None:
    """Forward the request to *target* (a full URL) and answer with the upstream's response.

    Return its result from a handler. ``timeout``: seconds to connect, to receive the
    response head, and between two pieces of the body (an upstream event stream quiet for
    longer ends; h3green upstreams send a heartbeat every 15 s). ``headers``: extra or
    replacement request headers. ``forward_headers``: the request header names to pass
    on (default: every end-to-end header). ``xfwd``: add ``X-Forwarded-*``. ``pool``: a
    ``urllib3.PoolManager`` of your own (TLS settings, limits).
    """
    if not timeout > 0:
        raise ValueError(f"proxy timeout must be > 0 seconds, got {timeout!r}")
    urllib3 = _urllib3()
    manager = pool if pool is not None else _green_manager()
    upstream_headers = _request_headers(event, headers, forward_headers, xfwd)
    body = event.iter_body() if _has_body(event) else None
    try:
        upstream: BaseHTTPResponse = manager.urlopen(
            event.method,
            target,
            body=body,
            headers=upstream_headers,
            chunked=body is not None and "content-length" not in upstream_headers,
            retries=False,
            redirect=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            preload_content=False,
            decode_content=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        raise _upstream_error(exc, target) from None
    try:
        return _answer(event, target, upstream)
    except BaseException:
        upstream.close()  # never leave the upstream connection open behind an error
        raise


def _answer(event: H3Event, target: str, upstream: BaseHTTPResponse) -> Response | None:
    """The response (or, for an event stream, the staged relay) for *upstream*'s answer."""
    relayed = []
    for name, value in _end_to_end(upstream.headers.items()):
        lowered = name.lower()
        if lowered in _NOT_RELAYED:
            continue
        relayed.append((lowered, _location(value, target, event) if lowered == "location" else value))
    status = upstream.status
    ctype = upstream.headers.get("content-type", "")
    if (
        ctype.split(";")[0].strip().lower() == "text/event-stream"
        and event.method != "HEAD"
        and status == 200
    ):
        event.start_sse(status)
        for name, value in relayed:
            if name in _SSE_HEADERS:
                event.set_header(name, value)
            else:
                event.append_header(name, value)
        event.set_stream_callback(_SSERelay(upstream))
        return None
    if event.method == "HEAD" or status in _NO_BODY:
        upstream.release_conn()  # RFC 9112 §6.3: these have no body, whatever their headers say
        return Response(None, status, relayed)
    return Response(_UpstreamBody(upstream), status, relayed)
