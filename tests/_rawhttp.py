"""A tiny raw-socket HTTP/1.1 client for byte-exact server tests.

It sends exactly the bytes a test gives (in pieces, with pauses between them) and parses
what comes back by hand, so nothing between the test and the server second-guesses the
framing. Every read has a deadline; every loop ends by itself.
"""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Iterable

import gevent
import gevent.socket
import greenlet

#: Pieces to send: bytes are written, a float is a pause in seconds.
Script = bytes | Iterable[bytes | float]


class RawResponse:
    """One parsed response: status, reason, headers (lower-cased names), body."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} {self.headers} {self.body[:80]!r}>"


class RawClient:
    """One client connection to ``address``."""

    def __init__(self, address: tuple[str, int], timeout: float = 3.0, rcvbuf: int | None = None) -> None:
        self.sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect(), so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(address)
        except OSError:
            self.sock.close()
            raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buffer = b""
        self.eof = False
        self.reset = False
        self.send_failed = False

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

    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False at EOF, reset or the deadline."""
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
            if not self._fill(deadline):
                return None
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _take(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            if not self._fill(deadline):
                raise AssertionError(f"connection closed mid-body: {self.buffer!r}")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self, timeout: float | None = None, head_only: bool = False) -> RawResponse | None:
        """The next final response (interim 1xx ones are skipped), or None at a clean EOF."""
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
            response = RawResponse(int(status), reason, headers, b"")
            if response.status >= 200:
                break
        if head_only:
            return response
        length = response.header("content-length")
        if length is not None:
            response.body = self._take(int(length), deadline)
        elif response.header("transfer-encoding") == "chunked":
            pieces = []
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
            while self._fill(deadline):
                pass
            response.body, self.buffer = self.buffer, b""
        return response

    def closed_by_server(self, timeout: float = 3.0) -> bool:
        """True when the server closes its side (EOF or reset) with nothing more to read."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
        except TimeoutError:
            return False
        return not self.buffer

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def wait_until(condition: object, timeout: float = 3.0) -> bool:
    """Poll *condition* (a callable) until true or the deadline; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():  # type: ignore[operator]
            return True
        if time.monotonic() >= deadline:
            return False
        gevent.sleep(0.01)


def live_greenlets() -> set[greenlet.greenlet]:
    """Greenlets alive now. Call ``warm_up()`` before taking a baseline."""
    gc.collect()
    return {obj for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet) and not obj.dead}


def warm_up() -> None:
    """Start what gevent starts once per process (the hub, the resolver's thread pool)."""
    gevent.get_hub()
    gevent.socket.getaddrinfo("127.0.0.1", 80)
