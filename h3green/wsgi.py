"""WSGI in both directions: an ``H3`` app served by any WSGI server, and any WSGI app
mounted inside an ``H3`` app.

Strategy, H3 as WSGI (``serve_wsgi``, ``WSGIAdapter``): the environ becomes an
``H3Event`` (its body a ``BodySource`` over ``wsgi.input`` that never reads past
``CONTENT_LENGTH``), ``app.handle`` runs exactly as on the native server, and the
``Response`` goes back through ``start_response``. PEP 3333 hands ``PATH_INFO`` over as
the raw bytes decoded as latin-1; they are percent-quoted again so that the app's own
canonicalisation (strict UTF-8, dot segments) applies unchanged. Routing uses
``PATH_INFO``: the app lives at ``SCRIPT_NAME``.

Server-Sent Events through WSGI: the response is an iterable that drains a bounded
``gevent.queue.Queue``. The stream callback still runs in its own greenlet
(``spawn_stream``, ``gevent.spawn_later(0)``) on an ``SSEWriter`` whose transport puts
encoded events into that queue; a queue that stays full for ``sse_send_timeout`` means
the client stopped reading (``BackpressureDetected``). While the queue is idle the
iterable yields heartbeat comments, which is also how a WSGI server finds out that the
client left: its write fails and it calls ``close()``, which ends the writer (``on_close``
runs) and kills the callback greenlet.

Without gevent (wsgiref, a thread per request): it still works. Every OS thread has its
own gevent hub, and the thread serving the stream runs that hub whenever it waits on the
queue, so the callback greenlet runs in the same thread and nothing is shared between
threads. The price is one server thread per open stream, and a blocking call in the
callback (an unpatched ``time.sleep``) holds up that stream's thread, no other. gevent
objects shared between streams (a ``Channel``) belong to one hub: they need a gevent server.

Strategy, WSGI inside H3 (``WSGIMount``): ``SCRIPT_NAME`` is the mount prefix and
``PATH_INFO`` the rest of the canonical path, both as PEP 3333 latin-1 strings of the
UTF-8 bytes. The app's result is pulled until it yields its first non-empty chunk (PEP
3333: the head may not go out before that); a response that declares a small
``Content-Length`` is buffered whole so it goes out framed by length in one write, any
other is streamed (chunked) as the app yields it. ``close()`` is called on the result
whatever happens.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import gevent
import gevent.queue
from gevent._hub_local import get_hub_if_exists

from .datastructures import Headers
from .errors import BackpressureDetected, ConnectionLost, HTTPError, status_text
from .event import DEFAULT_MAX_BODY_SIZE, H3Event
from .response import Response, SSEResponse, close_body, error_response
from .router import InvalidPath, normalize_path
from .sse import SSEWriter, encode_comment, spawn_stream

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .app import H3

__all__ = ["WSGIAdapter", "WSGIConfig", "WSGIMount", "serve_wsgi"]

logger = logging.getLogger("h3green")

_NO_BODY_STATUSES: Final = frozenset({204, 304})
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
_KILL_TIMEOUT: Final = 1.0
_END: Final = b""  # queue sentinel (events are never empty)


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
    headers = Headers()
    headers._items = items
    return headers


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
        headers._items.append(("host", host))
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


class _ClosingIterator:
    """Yields a response body, and passes the WSGI server's ``close()`` on to it."""

    __slots__ = ("_body", "_iterator")

    def __init__(self, body: Iterable[bytes]) -> None:
        self._body = body
        self._iterator = iter(body)

    def __iter__(self) -> _ClosingIterator:
        return self

    def __next__(self) -> bytes:
        return next(self._iterator)

    def close(self) -> None:
        close_body(self._body)


class WSGIAdapter:
    """``app`` as a WSGI application with options: ``WSGIAdapter(app, max_body_size=...)``.

    Options are the fields of ``WSGIConfig``. ``app(environ, start_response)`` itself
    uses the defaults.
    """

    __slots__ = ("app", "config")

    def __init__(self, app: H3, **options: Any) -> None:
        from .app import H3

        if not isinstance(app, H3):
            raise TypeError(f"WSGIAdapter serves an H3 app, got {app!r}")
        self.app = app
        self.config = WSGIConfig(**options)

    def __repr__(self) -> str:
        return f"<WSGIAdapter {self.app!r}>"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return _serve(self.app, self.config, environ, start_response)


def serve_wsgi(app: H3, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Answer one WSGI request with *app* (what ``H3.__call__`` does)."""
    return _serve(app, _DEFAULT_CONFIG, environ, start_response)


def _serve(
    app: H3, config: WSGIConfig, environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    try:
        event = event_from_environ(environ, config)
    except HTTPError as exc:
        return _send_bytes(error_response(exc), environ.get("REQUEST_METHOD", "GET"), start_response)
    response = app.handle(event)
    method = event.method
    event._head_sent = True  # from here on, as on the native server, the head is fixed
    if isinstance(response, SSEResponse):
        start_response(_status_line(response.status), _wsgi_headers(response))
        if response.callback is None or method == "HEAD":
            return []
        heartbeat = config.sse_heartbeat if response.heartbeat is None else response.heartbeat
        return _SSEIterable(event, response.callback, config, heartbeat)
    body = response.body
    if type(body) is bytes:
        return _send_bytes(response, method, start_response)
    assert not isinstance(body, bytes)
    status = response.status
    if status in _NO_BODY_STATUSES or status < 200 or method == "HEAD":
        close_body(body)
        start_response(_status_line(status), _wsgi_headers(response))
        return []
    # Like the native server, hold the head back until the first piece exists, so an
    # iterable that fails at once still gets an honest error response.
    iterator = _ClosingIterator(body)
    try:
        first = next(iterator, None)
    except HTTPError as exc:
        iterator.close()
        return _send_bytes(error_response(exc), method, start_response)
    except Exception:
        logger.exception("streamed response body of %s %s failed", method, event.target)
        iterator.close()
        return _send_bytes(error_response(None, app.debug), method, start_response)
    start_response(_status_line(status), _wsgi_headers(response))
    if first is None:
        iterator.close()
        return []
    return _Prepended(first, iterator)


def _wsgi_headers(response: Response) -> list[tuple[str, str]]:
    headers = [(name, value) for name, value in response.headers._items if name not in _HOP_BY_HOP]
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
    no_body = status in _NO_BODY_STATUSES or status < 200
    if not no_body:
        headers.append(("content-length", str(len(body))))
    start_response(_status_line(status), headers)
    return [] if no_body or method == "HEAD" else [body]


class _Prepended:
    """The first piece (already pulled), then the rest, with ``close()`` passed on."""

    __slots__ = ("_first", "_rest")

    def __init__(self, first: bytes, rest: _ClosingIterator) -> None:
        self._first: bytes | None = first
        self._rest = rest

    def __iter__(self) -> _Prepended:
        return self

    def __next__(self) -> bytes:
        first = self._first
        if first is not None:
            self._first = None
            return first
        return next(self._rest)

    def close(self) -> None:
        self._rest.close()


class _QueueTransport:
    """An ``SSEWriter``'s way to the WSGI server: a bounded queue the response iterable drains."""

    __slots__ = ("aborted", "closed", "finished", "queue", "timeout")

    def __init__(self, size: int, timeout: float) -> None:
        self.queue: gevent.queue.Queue[bytes] = gevent.queue.Queue(size)
        self.timeout = timeout or None
        self.closed = False
        self.finished = False
        self.aborted = False

    def send(self, payload: bytes) -> None:
        if self.closed:
            raise ConnectionLost("the client disconnected")
        try:
            self.queue.put(payload, timeout=self.timeout)
        except gevent.queue.Full:
            self.closed = self.finished = True
            raise BackpressureDetected(
                f"the WSGI server took no event for {self.timeout} s; the stream was dropped"
            ) from None

    def finish(self) -> None:
        self.finished = True
        try:
            self.queue.put_nowait(_END)
        except gevent.queue.Full:
            pass  # the iterable sees ``finished`` once it has drained the queue

    def abort(self) -> None:
        """The writer was dropped (``SSEWriter.drop``): end the body now, never blocking.

        Events still queued are discarded; the client reconnects with its Last-Event-ID.
        """
        self.closed = self.aborted = True
        self.finish()


class _SSEIterable:
    """The WSGI response body of an event stream."""

    __slots__ = ("_closed", "_greenlet", "_heartbeat", "_opened", "_own_hub", "_transport", "_writer")

    def __init__(
        self,
        event: H3Event,
        callback: Callable[[SSEWriter], object],
        config: WSGIConfig,
        heartbeat: float,
    ) -> None:
        # A thread of a WSGI server without gevent has no hub until this stream makes one;
        # its loop holds file descriptors, so the stream that made it destroys it.
        self._own_hub = get_hub_if_exists() is None
        self._transport = _QueueTransport(config.sse_queue_size, config.sse_send_timeout)
        self._writer = SSEWriter(self._transport, event)
        self._heartbeat = heartbeat
        self._opened = False
        self._closed = False
        self._greenlet: gevent.Greenlet | None = spawn_stream(callback, self._writer)
        # However the callback ends (returned, dropped, killed), the body ends with it.
        self._greenlet.rawlink(self._callback_ended)

    def _callback_ended(self, greenlet: gevent.Greenlet) -> None:
        self._transport.finish()

    def __iter__(self) -> _SSEIterable:
        return self

    def __next__(self) -> bytes:
        if not self._opened:
            # WSGI servers send the head with the first body bytes; a comment sends it
            # now, so the client's EventSource opens before the first event exists.
            self._opened = True
            return encode_comment("")
        transport = self._transport
        queue = transport.queue
        writer = self._writer
        heartbeat = self._heartbeat
        while not self._closed and not transport.aborted:
            if transport.finished and not queue.qsize():
                break
            timeout = None
            if heartbeat > 0:
                timeout = max(0.0, writer.last_activity + heartbeat - time.monotonic())
            try:
                payload: bytes = queue.get(timeout=timeout)
            except gevent.queue.Empty:
                writer.last_activity = time.monotonic()
                return encode_comment("")
            if payload is not _END and not transport.aborted:
                return payload
        raise StopIteration

    def close(self) -> None:
        """The WSGI server is done (stream ended, or the client left)."""
        if self._closed:
            return
        self._closed = True
        self._transport.closed = True
        writer = self._writer
        writer.connection_lost()
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None and not greenlet.dead:
            # GreenletExit runs the callback's finally/with blocks now, even mid-sleep.
            greenlet.kill(block=True, timeout=_KILL_TIMEOUT)
        writer.close()
        if self._own_hub:
            hub = get_hub_if_exists()
            if hub is not None:
                hub.destroy(destroy_loop=True)


# -- WSGI applications inside H3 -----------------------------------------------------------

#: ``wsgi.multiprocess`` for mounted apps (the gunicorn worker sets it when workers > 1).
MULTIPROCESS = False


def _wsgi_str(text: str) -> str:
    """PEP 3333 "bytes as str": the UTF-8 bytes of *text*, decoded as latin-1."""
    return text.encode("utf-8").decode("latin-1")


class _InputStream:
    """``wsgi.input``: a file-like view of ``event.iter_body()``, read on demand."""

    __slots__ = ("_buffer", "_chunks", "error")

    def __init__(self, event: H3Event) -> None:
        self._chunks: Iterator[bytes] | None = event.iter_body()
        self._buffer = b""
        #: The ``HTTPError`` a read raised (body too large, client gone), if any.
        self.error: HTTPError | None = None

    def _fill(self) -> bool:
        chunks = self._chunks
        if chunks is None:
            return False
        try:
            data = next(chunks, None)
        except HTTPError as exc:
            self.error = exc
            self._chunks = None
            raise
        if data is None:
            self._chunks = None
            return False
        self._buffer += data
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            data, self._buffer = self._buffer, b""
            return data
        while len(self._buffer) < size and self._fill():
            pass
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                end += 1
                break
            if 0 <= limit <= len(self._buffer) or not self._fill():
                end = len(self._buffer)
                break
        if 0 <= limit < end:
            end = limit
        data, self._buffer = self._buffer[:end], self._buffer[end:]
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def _server_name(event: H3Event) -> tuple[str, str]:
    host = event.headers.get("host") or "localhost"
    default_port = "443" if event.scheme == "https" else "80"
    if host.startswith("["):  # IPv6 literal, RFC 3986 §3.2.2
        name, _, rest = host.partition("]")
        port = rest[1:] if rest.startswith(":") else default_port
        return name + "]", port or default_port
    name, _, port = host.partition(":")
    return name, port or default_port


class _StartResponse:
    """The ``start_response`` callable of one request, with its ``write()``."""

    __slots__ = ("headers", "sent", "status", "written")

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.written: list[bytes] = []
        self.sent = False

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
    ) -> Callable[[bytes], object]:
        if exc_info is not None and exc_info[1] is not None:
            try:
                if self.sent:
                    # PEP 3333: too late to change the head; let the error end the response.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise RuntimeError("start_response() was already called (pass exc_info to replace the head)")
        if not isinstance(status, str) or len(status) < 4 or not status[:3].isdigit() or status[3:4] != " ":
            raise ValueError(f"WSGI status must look like '200 OK', got {status!r}")
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        if self.status is None:
            raise RuntimeError("write() called before start_response()")
        if not isinstance(data, bytes):
            raise TypeError(f"write() takes bytes, got {type(data).__name__}")
        if data:
            self.written.append(data)


class _MountedBody:
    """The body of a mounted app's response: what ``write()`` gave, then the result."""

    __slots__ = ("_done", "_first", "_iterator", "_result", "_start")

    def __init__(
        self, first: list[bytes], iterator: Iterator[bytes], result: Iterable[bytes], start: _StartResponse
    ) -> None:
        self._first = first
        self._iterator = iterator
        self._result = result
        self._start = start
        self._done = False

    def __iter__(self) -> _MountedBody:
        return self

    def __next__(self) -> bytes:
        if self._first:
            return self._first.pop(0)
        # Everything goes through ``written`` so that bytes passed to write() while the
        # app produced a chunk go out before that chunk.
        written = self._start.written
        while not written:
            if self._done:
                raise StopIteration
            try:
                data = next(self._iterator)
            except StopIteration:
                self._done = True
                continue
            if data:
                written.append(data)
        return written.pop(0)

    def close(self) -> None:
        close_body(self._result)


class WSGIMount:
    """Serves a WSGI application under *prefix* of an ``H3`` app (see ``H3.mount``).

    Responses that declare a ``Content-Length`` of at most ``buffer_limit`` bytes are
    read whole and sent in one write; others stream as the app yields them.
    """

    __slots__ = ("app", "buffer_limit", "prefix")

    def __init__(self, app: WSGIApplication, prefix: str, *, buffer_limit: int = 1024 * 1024) -> None:
        if not callable(app):
            raise TypeError(f"cannot mount {app!r}: not a WSGI callable")
        self.app = app
        self.prefix = "/" + prefix.strip("/")
        self.buffer_limit = buffer_limit

    def __repr__(self) -> str:
        return f"<WSGIMount {self.prefix} {self.app!r}>"

    def environ(self, event: H3Event, stream: Any) -> dict[str, Any]:
        """The PEP 3333 environ for *event* (``stream`` is its ``wsgi.input``)."""
        path = event.path
        # The router matched the full canonical path; when this H3 app is itself mounted,
        # ``event.path`` lost the outer prefix, which belongs in SCRIPT_NAME too.
        try:
            full = normalize_path(event.target.partition("?")[0])
        except InvalidPath:  # pragma: no cover - the app rejected such targets already
            full = path
        outer = full[: len(full) - len(path)] if full.endswith(path) else ""
        rest = path[len(self.prefix) :] if path.startswith(self.prefix) else path
        server_name, server_port = _server_name(event)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": event.method,
            "SCRIPT_NAME": _wsgi_str(outer + self.prefix),
            "PATH_INFO": _wsgi_str(rest),
            "QUERY_STRING": event.query_string,
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "SERVER_PROTOCOL": f"HTTP/{event.http_version}",
            "REQUEST_URI": event.target,
            "RAW_URI": event.target,
            "REMOTE_ADDR": event.remote_addr or "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": event.scheme,
            "wsgi.input": stream,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": MULTIPROCESS,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }
        for name, value in event.headers._items:
            if name == "content-type":
                environ["CONTENT_TYPE"] = value
            elif name == "content-length":
                environ["CONTENT_LENGTH"] = value
            else:
                key = "HTTP_" + name.upper().replace("-", "_")
                # RFC 9110 §5.3: repeated fields combine into one, comma-separated.
                environ[key] = environ[key] + "," + value if key in environ else value
        return environ

    def __call__(self, event: H3Event) -> Response:
        stream = _InputStream(event)
        start = _StartResponse()
        try:
            result = self.app(self.environ(event, stream), start)
        except Exception:
            if stream.error is not None:
                # The app failed because the body was refused: answer with why (413...).
                raise stream.error from None
            raise
        try:
            iterator = iter(result)
            first: list[bytes] = []
            # PEP 3333: the head waits for the first non-empty chunk (or the end).
            for data in iterator:
                if data:
                    first.append(data)
                    break
            else:
                iterator = iter(())
            if start.status is None:
                raise RuntimeError(f"WSGI app {self.app!r} returned without calling start_response()")
            first = start.written + first
            start.written = []
            if stream.error is not None:
                raise stream.error
            response = Response(None, int(start.status[:3]), start.headers)
            start.sent = True
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) <= self.buffer_limit:
                for data in iterator:
                    first.extend(start.written)
                    start.written = []
                    first.append(data)
                first.extend(start.written)
                start.written = []
                response.body = b"".join(first)
                close_body(result)
                return response
        except BaseException:
            close_body(result)
            raise
        response.body = _MountedBody(first, iterator, result, start)
        return response
