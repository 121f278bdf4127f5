"""Real-socket helpers for the SSE live tests: a gevent-socket HTTP client and counters."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import h11
from gevent import socket as gsocket

from h3green.testing import ServerSentEvent, parse_sse_lines


class RawClient:
    """One HTTP/1.1 connection driven by h11 over a gevent socket (cooperative without
    monkey patching, so it shares the loop with the server under test)."""

    def __init__(self, address: tuple[str, int], *, rcvbuf: int | None = None, timeout: float = 5.0) -> None:
        sock = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the advertised window stays small.
            sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(address)
        self.sock = sock
        self.h11 = h11.Connection(h11.CLIENT)
        self.closed = False

    def request(self, path: str, headers: list[tuple[str, str]] | None = None) -> h11.Response:
        hdrs = [("host", "localhost"), *(headers or [])]
        self.sock.sendall(self.h11.send(h11.Request(method="GET", target=path, headers=hdrs)))
        self.sock.sendall(self.h11.send(h11.EndOfMessage()) or b"")
        while True:
            event = self.next_event()
            if type(event) is h11.Response:
                return event

    def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(self.sock.recv(65536))

    def body_pieces(self) -> Iterator[bytes]:
        while True:
            event = self.next_event()
            if type(event) is h11.Data:
                yield bytes(event.data)
            elif type(event) in (h11.EndOfMessage, h11.ConnectionClosed):
                return

    def lines(self) -> Iterator[str]:
        buffer = ""
        for piece in self.body_pieces():
            buffer += piece.decode()
            parts = buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            buffer = parts.pop()
            yield from parts

    def events(self) -> Iterator[ServerSentEvent]:
        return parse_sse_lines(self.lines())

    def get(self, path: str) -> tuple[int, bytes]:
        """A plain request on this connection (keep-alive), whole body read."""
        response = self.request(path)
        body = b"".join(self.body_pieces())
        self.h11.start_next_cycle()
        return response.status_code, body

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


def wait_until(condition: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> float:
    """Poll *condition* (yielding to the loop) until true; the seconds it took."""
    start = time.monotonic()
    deadline = start + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(0.002)
    return time.monotonic() - start


def live_greenlets() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, gevent.Greenlet) and not obj.dead)
