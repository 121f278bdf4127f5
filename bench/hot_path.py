"""The request hot path without the network: one connection's loop over a fake socket.

``h3green._connection.Connection.run`` serves N keep-alive requests that a fake socket
hands it one per ``recv``; the figure is process CPU time per request (best of several
rounds), so it holds everything h3green's own Python does per request (driver, event,
app, response framing) and none of the system calls or hub switches a real socket adds.
It moves with each change to the hot path where ``bench/run.py``'s CPU µs/req barely
rises above the machine's noise, which is what the ``# PERF:`` notes quote.

    python bench/hot_path.py [--tree DIR] [--parser httptools,h11] [--requests N]

``--tree`` imports h3green from another checkout (say, a ``git worktree`` of ``main``) to
compare before and after.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

REQUESTS = {
    "hello": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
    "json-params": (
        b"GET /users/42?fields=name,email HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
    ),
}


class FakeSocket:
    """Hands out the same request *count* times, then end of stream; swallows responses."""

    timeout: float | None = None

    def __init__(self, request: bytes, count: int) -> None:
        self.request = request
        self.count = count
        self.sent = 0

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def recv(self, size: int) -> bytes:
        if self.count:
            self.count -= 1
            return self.request
        return b""

    def send(self, data: bytes, flags: int = 0, timeout: float | None = None) -> int:
        self.sent += len(data)
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.sent += len(data)

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        pass


def measure(parser: str, request: bytes, count: int, rounds: int) -> float:
    """CPU µs per request, best of *rounds*."""
    import apps

    from h3green._connection import Connection
    from h3green.config import Config

    app = apps.make_h3_app()
    config = Config(http_parser=parser, access_log=False)
    best = float("inf")
    for _ in range(rounds):
        sock: Any = FakeSocket(request, count)
        conn = Connection(sock, ("127.0.0.1", 50000), app, config)
        started = time.process_time()
        conn.run()
        best = min(best, (time.process_time() - started) / count * 1e6)
        assert sock.sent > count * 100, "responses were not written"
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--parser", default="httptools,h11")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gevent import monkey

    monkey.patch_all()
    import h3green

    print(f"h3green from {Path(h3green.__file__).parent}")
    for name in args.parser.split(","):
        for workload, request in REQUESTS.items():
            per_request = measure(name, request, args.requests, args.rounds)
            print(f"{name:10} {workload:12} {per_request:6.2f} µs/request")


if __name__ == "__main__":
    main()
