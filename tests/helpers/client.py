"""The one raw HTTP/1.1 client of the live tests, over a gevent socket.

Strategy: every live test talks to a server through ``RawClient``, so a framing fix
lands everywhere at once. It is cooperative without monkey patching (a gevent socket),
so it shares the loop with an in-process server under test, and a hundred of them can
share this process's loop against a subprocess. It reads in two ways:

- *byte-exact* (``send`` a script of bytes and pauses, then ``response()``): what the
  test writes goes out untouched and the answer is parsed by hand, so nothing between
  the test and the server second-guesses the framing (hostile input, limits, shutdown);
- *through h11* (``open``/``fetch``/``get``/``pieces``/``events``): well-formed requests
  and a conforming parse of the answer, streamed piece by piece (SSE, keep-alive).

One connection uses one way. Every read has a deadline; every loop ends by itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import gevent
import h11
from gevent import socket as gsocket

from h3green.testing import ServerSentEvent, parse_sse_lines, split_lines

__all__ = ["Address", "RawClient", "RawResponse", "Script", "accepts", "free_port", "get_once"]

#: ``(host, port)`` for TCP, or the path of a UNIX socket.
Address = tuple[str, int] | str
#: Pieces to send: bytes are written, a float is a pause in seconds.
Script = bytes | Iterable[bytes | float]


class RawResponse:
    """One parsed response: status, reason, headers (lower-cased names), body (and the
    chunks it came in, when chunked)."""

    def __init__(
        self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes, version: str = "HTTP/1.1"
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.version = version
        self.chunks: list[bytes] = []

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} {self.headers} {self.body[:80]!r}>"


class RawClient:
    """One HTTP/1.1 connection to *address*; every read is bounded by *timeout*."""

    def __init__(self, address: Address, timeout: float = 5.0, *, rcvbuf: int | None = None) -> None:
        family = gsocket.AF_UNIX if isinstance(address, str) else gsocket.AF_INET
        sock = gsocket.socket(family, gsocket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the advertised window is small from the start.
            sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            if family == gsocket.AF_INET:
                sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.timeout = timeout
        self.h11 = h11.Connection(h11.CLIENT)
        self.closed = False
        # Byte-exact reading state.
        self.buffer = b""
        self.eof = False
        self.reset = False
        self.send_failed = False

    # -- byte-exact ---------------------------------------------------------------------

    def send(self, script: Script) -> None:
        """Send *script*; stop quietly if the server has already closed."""
        pieces = [script] if isinstance(script, bytes) else script
        for piece in pieces:
            if isinstance(piece, float):
                gevent.sleep(piece)
                continue
            try:
                self.sock.sendall(piece)
            except OSError:
                self.send_failed = True
                return

    def fill(self, deadline: float) -> bool:
        """Read more bytes into ``buffer``; False at EOF or reset, ``TimeoutError`` at the deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no response before the deadline")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no response before the deadline") from None
        except ConnectionResetError:
            self.reset = True
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _take_line(self, deadline: float) -> bytes | None:
        while b"\r\n" not in self.buffer:
            if not self.fill(deadline):
                return None
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _take(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            if not self.fill(deadline):
                raise AssertionError(f"connection closed mid-body: {self.buffer!r}")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(
        self, timeout: float | None = None, head_only: bool = False, *, interim: bool = False
    ) -> RawResponse | None:
        """The next final response, or None at a clean EOF. Interim (1xx) responses are
        skipped, unless *interim*: then the next response of any kind is returned."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            line = self._take_line(deadline)
            if line is None:
                assert not self.buffer, f"connection closed mid-head: {self.buffer!r}"
                return None
            version, status, reason = line.decode("latin-1").split(" ", 2)
            assert version == "HTTP/1.1", line
            headers: list[tuple[str, str]] = []
            while (field := self._take_line(deadline)) != b"":
                assert field is not None, "connection closed mid-head"
                name, _, value = field.decode("latin-1").partition(":")
                headers.append((name.lower(), value.strip()))
            response = RawResponse(int(status), reason, headers, b"", version)
            if response.status >= 200 or interim:
                break
        if head_only or response.status < 200 or response.status in (204, 304):  # RFC 9112 §6.3
            return response
        length = response.header("content-length")
        if length is not None:
            response.body = self._take(int(length), deadline)
        elif response.header("transfer-encoding") == "chunked":
            pieces = response.chunks
            while True:
                size_line = self._take_line(deadline)
                assert size_line is not None, "connection closed mid-chunk"
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while self._take_line(deadline):  # trailers, then the blank line
                        pass
                    break
                pieces.append(self._take(size, deadline))
                assert self._take(2, deadline) == b"\r\n"
            response.body = b"".join(pieces)
        else:
            response.body = self.read_to_eof(deadline)
        return response

    def read_to_eof(self, deadline: float | None = None) -> bytes:
        """Everything until the server closes (``TimeoutError`` past the deadline)."""
        deadline = time.monotonic() + self.timeout if deadline is None else deadline
        while self.fill(deadline):
            pass
        data, self.buffer = self.buffer, b""
        return data

    def expect(
        self, timeout: float | None = None, *, head_only: bool = False, interim: bool = False
    ) -> RawResponse:
        """``response()`` that must come (an ``AssertionError`` at EOF)."""
        response = self.response(timeout, head_only, interim=interim)
        assert response is not None, "the server closed the connection instead of answering"
        return response

    def closed_by_server(self, timeout: float = 3.0) -> bool:
        """True when the server closes its side (EOF or reset) with nothing more to read."""
        deadline = time.monotonic() + timeout
        try:
            while self.fill(deadline):
                pass
        except TimeoutError:
            return False
        return not self.buffer

    # -- through h11 --------------------------------------------------------------------

    def open(
        self, method: str, target: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> h11.Response:
        """Send one request; the response head (informational responses skipped)."""
        hdrs = [("host", "localhost"), *(headers or [])]
        if body:
            hdrs.append(("content-length", str(len(body))))
        data = self.h11.send(h11.Request(method=method, target=target, headers=hdrs)) or b""
        if body:
            data += self.h11.send(h11.Data(data=body)) or b""
        data += self.h11.send(h11.EndOfMessage()) or b""
        self.sock.sendall(data)
        while True:
            event = self.next_event()
            if type(event) is h11.Response:
                return event

    def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.sock.settimeout(self.timeout)
            self.h11.receive_data(self.sock.recv(65536))

    def pieces(self) -> Iterator[bytes]:
        """The response body as it arrives; ends at its end or at EOF."""
        while True:
            event = self.next_event()
            if type(event) is h11.Data:
                yield bytes(event.data)
            elif type(event) in (h11.EndOfMessage, h11.ConnectionClosed):
                return

    def read_until(self, marker: bytes, timeout: float) -> bytes:
        """Body bytes up to the piece that completes *marker* (or to the body's end);
        ``gevent.Timeout`` if that takes longer than *timeout*."""
        received = b""
        with gevent.Timeout(timeout):
            for piece in self.pieces():
                received += piece
                if marker in received:
                    break
        return received

    def lines(self) -> Iterator[str]:
        return split_lines(self.pieces())

    def events(self) -> Iterator[ServerSentEvent]:
        return parse_sse_lines(self.lines())

    def fetch(
        self, method: str, target: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One whole exchange: status, headers (lower-case names), body. The connection
        is ready for the next request unless either side is closing it."""
        head = self.open(method, target, body, headers)
        data = b"".join(self.pieces())
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return head.status_code, {k.decode(): v.decode() for k, v in head.headers}, data

    def get(self, path: str) -> tuple[int, bytes]:
        """A plain GET on this connection (keep-alive), whole body read."""
        status, _, body = self.fetch("GET", path)
        return status, body

    # -- both ---------------------------------------------------------------------------

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def free_port() -> int:
    """A port that was free a moment ago (for servers in other processes, which must be
    told a port rather than report the one they got)."""
    with gsocket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def accepts(port: int) -> bool:
    """Whether something listens on 127.0.0.1:*port* now (for ``wait_until``)."""
    try:
        gsocket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def get_once(port: int, path: str = "/", timeout: float = 10.0) -> bytes:
    """One ``GET`` on a connection of its own (``Connection: close``): the raw answer."""
    with RawClient(("127.0.0.1", port), timeout) as client:
        client.send(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return client.read_to_eof()
