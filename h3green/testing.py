"""``TestClient``: drive an app in-process through real HTTP/1.1 framing, no sockets.

Each request gets a fresh in-memory connection: an h11 client writes the request bytes, the
server's own ``Connection`` loop reads them (so limits, keep-alive rules, 100-continue,
chunking and SSE behave exactly as on a real socket), and the h11 client parses the
response bytes back. ``client.stream(...)`` reads a response incrementally, which is how
tests follow Server-Sent Events; leaving its ``with`` block disconnects the client.

::

    client = TestClient(app)
    assert client.get("/users/1").json() == {"id": "1"}
    with client.stream("GET", "/events") as stream:
        first = next(stream.iter_events())
"""

from __future__ import annotations

import codecs
import json as jsonlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Unpack
from urllib.parse import urlencode

import gevent
import gevent.event
import gevent.queue
import h11

from ._connection import Connection
from .app import H3
from .config import Config, ConfigOptions, make_config
from .datastructures import Headers, HeadersInit

__all__ = [
    "ServerSentEvent",
    "StreamingResponse",
    "TestClient",
    "TestResponse",
    "parse_sse_lines",
    "split_lines",
]

_EOF = b""


class _MemoryWatch:
    """What an I/O watcher of the hub is to a real socket: readable -> callback."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], object] | None) -> None:
        self.callback = callback

    def close(self) -> None:
        self.callback = None


class _MemorySocket:
    """The server's end of an in-memory connection (the subset of a socket it uses)."""

    def __init__(self) -> None:
        self.inbound: gevent.queue.Queue[bytes] = gevent.queue.Queue()
        self.outbound: gevent.queue.Queue[bytes] = gevent.queue.Queue()
        self.timeout: float | None = None
        self.closed = False
        #: Set once the server closed its end (whichever greenlet or stream owned it).
        self.released = gevent.event.Event()
        self._pending = b""
        self._watch: _MemoryWatch | None = None

    def feed(self, data: bytes) -> None:
        """Bytes from the client (``b""``: it closed its end)."""
        self.inbound.put(data)
        self._notify()

    def watch_readable(self, callback: Callable[[], object]) -> _MemoryWatch:
        """Call *callback* from the hub whenever bytes (or EOF) arrive (an SSE stream's
        watch, as ``loop.io`` is for a real socket)."""
        watch = self._watch = _MemoryWatch(callback)
        self._notify()
        return watch

    def _notify(self) -> None:
        watch = self._watch
        if watch is not None and (self._pending or self.inbound.qsize()):
            gevent.get_hub().loop.run_callback(self._fire, watch)

    @staticmethod
    def _fire(watch: _MemoryWatch) -> None:
        if watch.callback is not None:
            watch.callback()

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def recv(self, size: int) -> bytes:
        if self.closed:
            raise OSError("socket is closed")
        if not self._pending:
            try:
                if self.timeout == 0.0:
                    self._pending = self.inbound.get_nowait()
                else:
                    self._pending = self.inbound.get(timeout=self.timeout)
            except gevent.queue.Empty:
                if self.timeout == 0.0:
                    raise BlockingIOError("no data") from None
                raise TimeoutError("timed out") from None
            if self._pending is _EOF:
                self.inbound.put(_EOF)  # stays at EOF
                self._pending = b""
                return b""
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def sendall(self, data: bytes) -> None:
        if self.closed:
            raise BrokenPipeError("socket is closed")
        if data:
            self.outbound.put(bytes(data))

    def send(self, data: bytes, flags: int = 0, timeout: float | None = None) -> int:
        self.sendall(data)  # an in-memory peer takes everything at once
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.outbound.put(_EOF)
            self.released.set()

    def shutdown(self, how: int) -> None:  # pragma: no cover - the server never calls it here
        pass


class TestResponse:
    """A complete response: ``status``, ``headers``, ``body``, ``text``, ``json()``."""

    __test__ = False  # not a pytest test class

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes, http_version: str) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.http_version = http_version

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def content(self) -> bytes:
        return self.body

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    def __repr__(self) -> str:
        return f"<TestResponse {self.status} {self.body[:60]!r}>"


class ServerSentEvent:
    """One event as a WHATWG-conforming client would dispatch it."""

    __slots__ = ("data", "event", "id", "retry")

    def __init__(self, data: str, event: str, id: str | None, retry: int | None) -> None:
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    def json(self) -> Any:
        return jsonlib.loads(self.data)

    def __repr__(self) -> str:
        return f"ServerSentEvent(event={self.event!r}, data={self.data!r}, id={self.id!r})"


def split_lines(pieces: Iterable[bytes]) -> Iterator[str]:
    """UTF-8 text lines from body pieces, split on CRLF, CR or LF (WHATWG §9.2.5).

    A character or a CRLF split across two pieces is kept whole.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    buffer = ""
    for piece in pieces:
        buffer += decoder.decode(piece)
        # A trailing CR may be the first half of a CRLF: wait for the next piece.
        cut = len(buffer) - 1 if buffer.endswith("\r") else len(buffer)
        lines = buffer[:cut].replace("\r\n", "\n").replace("\r", "\n").split("\n")
        buffer = lines.pop() + buffer[cut:]
        yield from lines
    buffer += decoder.decode(b"", final=True)
    if buffer:
        lines = buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if not lines[-1]:
            lines.pop()  # the body ended with a line break: no line follows it
        yield from lines


def parse_sse_lines(lines: Iterator[str]) -> Iterator[ServerSentEvent]:
    """Dispatch events from lines (without their line breaks), per WHATWG HTML §9.2.6."""
    data: list[str] = []
    event = ""
    last_id: str | None = None
    retry: int | None = None
    for line in lines:
        if not line:
            if data:
                yield ServerSentEvent("\n".join(data), event or "message", last_id, retry)
            data, event, retry = [], "", None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\x00" not in value:
            last_id = value
        elif name == "retry" and value.isdigit():
            retry = int(value)


class StreamingResponse:
    """A response read as it arrives; use it as a context manager (exit disconnects)."""

    __test__ = False

    def __init__(self, client: _ClientConnection, status: int, reason: str, headers: Headers) -> None:
        self._client = client
        self.status = status
        self.reason = reason
        self.headers = headers

    @property
    def status_code(self) -> int:
        return self.status

    def iter_bytes(self) -> Iterator[bytes]:
        """Body pieces as the server sends them, until the body ends."""
        yield from self._client.body_pieces()

    def iter_lines(self) -> Iterator[str]:
        """Body lines, split on CRLF, CR or LF as the SSE format requires."""
        return split_lines(self.iter_bytes())

    def iter_events(self) -> Iterator[ServerSentEvent]:
        """Server-Sent Events, parsed the way a browser's EventSource does."""
        return parse_sse_lines(self.iter_lines())

    def read(self) -> bytes:
        return b"".join(self.iter_bytes())

    def close(self) -> None:
        """Disconnect, as a client closing its socket would."""
        self._client.disconnect()

    def __enter__(self) -> StreamingResponse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _ClientConnection:
    """The client's end: an h11 client over the in-memory socket, plus the server greenlet."""

    def __init__(self, app: H3, config: Config, remote_addr: str) -> None:
        self.sock = _MemorySocket()
        self.h11 = h11.Connection(h11.CLIENT)
        connection = Connection(self.sock, (remote_addr, 50000), app, config)
        self.server = gevent.spawn(connection.run)

    def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            self.sock.feed(data)

    def next_event(self, timeout: float) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            try:
                data = self.sock.outbound.get(timeout=timeout)
            except gevent.queue.Empty:
                raise TimeoutError(f"no response from the app within {timeout} s") from None
            self.h11.receive_data(data)

    def body_pieces(self, timeout: float = 30.0) -> Iterator[bytes]:
        while True:
            event = self.next_event(timeout)
            if type(event) is not h11.Data:
                return  # EndOfMessage, or ConnectionClosed for a close-delimited body
            yield bytes(event.data)

    def disconnect(self) -> None:
        self.sock.feed(_EOF)
        # An SSE stream outlives the greenlet that started it: wait for the socket.
        self.sock.released.wait(timeout=5)

    def abort(self) -> None:
        self.sock.feed(_EOF)
        self.server.kill(block=True, timeout=5)


class TestClient:
    """Call an app the way HTTP clients do, in-process: ``client.get("/path")``.

    Keyword options other than ``remote_addr`` and ``timeout`` configure the server
    (``max_body_size=10``, ``sse_heartbeat=0.05``...), as for ``Server``; the access log
    is off unless asked for.
    """

    __test__ = False

    def __init__(
        self,
        app: H3,
        *,
        remote_addr: str = "127.0.0.1",
        timeout: float = 30.0,
        config: Config | None = None,
        **options: Unpack[ConfigOptions],
    ) -> None:
        self.app = app
        self.remote_addr = remote_addr
        self.timeout = timeout
        if config is None:
            options = {"access_log": False, **options}
        self.config = make_config(config, options)

    def _open(  # noqa: PLR0912, PLR0913 - httpx-like keywords, each one a branch
        self,
        method: str,
        path: str,
        *,
        headers: HeadersInit = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | bytes | str | None = None,
        http_version: str = "1.1",
    ) -> tuple[_ClientConnection, h11.Response]:
        if params:
            path += ("&" if "?" in path else "?") + urlencode(params, doseq=True)
        request_headers = Headers(headers)
        body = b""
        if json is not None:
            body = jsonlib.dumps(json).encode()
            if "content-type" not in request_headers:
                request_headers.append("content-type", "application/json")
        elif isinstance(data, Mapping):
            body = urlencode(data, doseq=True).encode()
            if "content-type" not in request_headers:
                request_headers.append("content-type", "application/x-www-form-urlencoded")
        elif isinstance(data, str):
            body = data.encode()
        elif data is not None:
            body = bytes(data)
        if "host" not in request_headers:
            request_headers.append("host", "testserver")
        if body and "content-length" not in request_headers and "transfer-encoding" not in request_headers:
            request_headers.append("content-length", str(len(body)))
        client = _ClientConnection(self.app, self.config, self.remote_addr)
        request = h11.Request(method=method, target=path, headers=request_headers.items())
        if http_version == "1.1":
            client.send(request)
            if body:
                client.send(h11.Data(data=body))
            client.send(h11.EndOfMessage())
        else:
            # h11 writes only HTTP/1.1 requests: send these bytes ourselves, and let the
            # h11 client believe it sent the same request so it can parse the answer.
            raw = f"{method} {path} HTTP/{http_version}\r\n".encode()
            raw += b"".join(f"{k}: {v}\r\n".encode() for k, v in request_headers.items())
            client.sock.feed(raw + b"\r\n" + body)
            client.h11.send(request)
            client.h11.send(h11.Data(data=body)) if body else None
            client.h11.send(h11.EndOfMessage())
        try:
            while True:
                event = client.next_event(self.timeout)
                if type(event) is h11.Response:
                    return client, event
                if type(event) is not h11.InformationalResponse:  # pragma: no cover
                    raise RuntimeError(f"unexpected {event!r} from the app")
        except BaseException:
            # No response (the app hung, or the framing broke): end the server side too,
            # so a failed test leaves no greenlet behind.
            client.abort()
            raise

    def request(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        """Send one request and read the whole response (``headers``, ``params``,
        ``json``, ``data`` like httpx)."""
        client, head = self._open(method.upper(), path, **kwargs)
        try:
            body = b"".join(client.body_pieces(self.timeout))
        finally:
            client.disconnect()
        return TestResponse(
            head.status_code,
            head.reason.decode("latin-1"),
            Headers.from_raw(list(head.headers)),
            body,
            head.http_version.decode(),
        )

    def stream(self, method: str, path: str, **kwargs: Any) -> StreamingResponse:
        """Send one request and return as soon as the response head arrives."""
        client, head = self._open(method.upper(), path, **kwargs)
        return StreamingResponse(
            client, head.status_code, head.reason.decode("latin-1"), Headers.from_raw(list(head.headers))
        )

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("DELETE", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("HEAD", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("OPTIONS", path, **kwargs)
