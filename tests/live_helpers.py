"""Real-socket helpers for the live tests: one h11 client over a gevent socket, and counters.

Strategy: every live test module talks HTTP/1.1 through the same ``RawClient``, so a
framing fix in the client lands everywhere at once. It is h11 over a *gevent* socket:
cooperative without monkey patching, so it shares the loop with an in-process server
under test, and a hundred of them can share this process's loop against a subprocess.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import h11
from gevent import socket as gsocket
from gevent import subprocess as gsubprocess

from h3green.testing import ServerSentEvent, parse_sse_lines, split_lines

#: ``(host, port)`` for TCP, or the path of a UNIX socket.
Address = tuple[str, int] | str


class RawClient:
    """One HTTP/1.1 connection to *address*; every read is bounded by *timeout*."""

    def __init__(self, address: Address, *, rcvbuf: int | None = None, timeout: float = 5.0) -> None:
        family = gsocket.AF_UNIX if isinstance(address, str) else gsocket.AF_INET
        sock = gsocket.socket(family, gsocket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the advertised window stays small.
            sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.h11 = h11.Connection(h11.CLIENT)
        self.closed = False

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

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


def free_port() -> int:
    """A port that was free a moment ago (for servers in other processes, which must be
    told a port rather than report the one they got)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)


def start_cli_server(
    module: str, env: dict[str, str], *flags: str, cwd: str = TESTS
) -> tuple[gsubprocess.Popen[bytes], int]:
    """``python -m h3green module:app --port 0`` in *cwd*, and the port it reports.

    The caller kills the process (``proc.kill(); proc.wait()``) when done.
    """
    proc = gsubprocess.Popen(
        [sys.executable, "-m", "h3green", f"{module}:app", "--port", "0", "--no-access-log", *flags],
        cwd=cwd,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=gsubprocess.PIPE,
        stderr=gsubprocess.STDOUT,
    )
    assert proc.stdout is not None
    with gevent.Timeout(20, AssertionError("the server process did not start")):
        while line := proc.stdout.readline():
            if b"listening on http://" in line:
                return proc, int(line.rsplit(b":", 1)[1])
    proc.kill()
    raise AssertionError(f"the server process exited: {proc.communicate()[0]!r}")
