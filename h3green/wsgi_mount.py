"""Any WSGI app (Flask, Django...) mounted inside an ``H3`` app: ``app.mount(prefix, wsgi_app)``.

Strategy, WSGI inside H3 (``WSGIMount``): ``SCRIPT_NAME`` is the mount prefix and
``PATH_INFO`` the rest of the canonical path, both as PEP 3333 latin-1 strings of the
UTF-8 bytes. The app's result is pulled until it yields its first non-empty chunk (PEP
3333: the head may not go out before that); a response that declares a small
``Content-Length`` is buffered whole so it goes out framed by length in one write, any
other is streamed (chunked) as the app yields it. ``close()`` is called on the result
whatever happens.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .errors import HTTPError
from .event import H3Event
from .response import Response, close_body
from .router import InvalidPath, normalize_path

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import WSGIApplication

__all__ = ["WSGIMount"]

#: The values of ``WSGIMount(header_map=...)`` (gunicorn's ``--header-map``).
HEADER_MAPS = ("drop", "refuse", "dangerous")

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

    ``header_map`` says what becomes of a request header whose name holds an underscore,
    as gunicorn's setting of that name does: WSGI spells ``X-Forwarded-For`` and
    ``X_Forwarded_For`` alike (``HTTP_X_FORWARDED_FOR``), so a client could smuggle a
    value into a header the app trusts from its proxy. ``"drop"`` (the default) leaves
    such headers out of the environ, ``"refuse"`` answers 400, ``"dangerous"`` passes
    them on, merged with the dashed name's values.
    """

    __slots__ = ("app", "buffer_limit", "header_map", "prefix")

    def __init__(
        self,
        app: WSGIApplication,
        prefix: str,
        *,
        buffer_limit: int = 1024 * 1024,
        header_map: str = "drop",
    ) -> None:
        if not callable(app):
            raise TypeError(f"cannot mount {app!r}: not a WSGI callable")
        if header_map not in HEADER_MAPS:
            raise ValueError(f"header_map must be one of {', '.join(HEADER_MAPS)}, got {header_map!r}")
        self.app = app
        self.prefix = "/" + prefix.strip("/")
        self.buffer_limit = buffer_limit
        self.header_map = header_map

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
        header_map = self.header_map
        for name, value in event.headers.items():
            if "_" in name and header_map != "dangerous":
                if header_map == "refuse":
                    raise HTTPError(400, f"header name with an underscore: {name}")
                continue
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
