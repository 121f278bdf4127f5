"""SSE clients for the benchmark, in a process of their own (one epoll loop, no gevent).

``python bench/sse_client.py streams PORT SERVER_PID --levels 1000,5000,10000 --publishes 5``
opens idle streams to ``/stream`` level by level and, at each level, reads the server's RSS
from ``/proc`` (same machine) and times ``/publish`` fan-outs: the published event carries
the server's ``time.monotonic()`` at the publish call, which is system-wide on Linux, so
publish-to-last-reader is measured across the two processes. With ``--no-publish`` only
memory is measured (the gevent.pywsgi peer has no channel).

``python bench/sse_client.py firehose PORT --events 50000`` reads one stream as fast as it
can and reports events per second.

Both print one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import time
from typing import Any

_HEAD_END = b"\r\n\r\n"
_IN_FLIGHT = 256  # connections opened but not yet answered, so the backlog never overflows


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def settled_rss_kib(pid: int, deadline: float) -> int:
    """RSS once it stops moving (the server may still be finishing the last streams)."""
    last = rss_kib(pid)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = rss_kib(pid)
        if abs(now - last) < 64:
            return now
        last = now
    return last


def _get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    return response[response.index(_HEAD_END) + 4 :]


class Streams:
    """Many idle event-stream connections, driven by one selector."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.open: list[socket.socket] = []
        self.ticks: dict[int, int] = {}
        self._request = b"GET /stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"

    def grow_to(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending: dict[int, tuple[socket.socket, bytes]] = {}
        selector = self.selector
        while len(self.open) < count or pending:
            while len(pending) < _IN_FLIGHT and len(self.open) + len(pending) < count:
                sock = socket.create_connection(("127.0.0.1", self.port))
                sock.sendall(self._request)
                sock.setblocking(False)
                pending[sock.fileno()] = (sock, b"")
                selector.register(sock, selectors.EVENT_READ)
            if time.monotonic() > deadline:
                raise TimeoutError(f"opened {len(self.open)} of {count} streams in {timeout} s")
            for key, _ in selector.select(1.0):
                sock = key.fileobj  # type: ignore[assignment]
                fd = sock.fileno()
                if fd not in pending:
                    sock.recv(65536)  # a stream already open got a byte: ignore
                    continue
                data = pending[fd][1] + sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed a stream before answering")
                if _HEAD_END in data:
                    if not data.startswith(b"HTTP/1.1 200"):
                        raise ConnectionError(f"stream refused: {data[:60]!r}")
                    del pending[fd]
                    self.open.append(sock)
                    self.ticks[fd] = 0
                else:
                    pending[fd] = (sock, data)

    def fan_out(self, timeout: float) -> float:
        """Seconds from the publish call to the last stream reading the event."""
        target = {fd: n + 1 for fd, n in self.ticks.items()}
        waiting = set(target)
        answer = json.loads(_get(self.port, "/publish"))
        started: float = answer["t0"]
        last = started
        deadline = time.monotonic() + timeout
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} of {len(target)} streams missed the event")
            for key, _ in self.selector.select(1.0):
                sock = key.fileobj
                data = sock.recv(65536)  # type: ignore[union-attr]
                if not data:
                    raise ConnectionError("the server closed a stream")
                fd = sock.fileno()  # type: ignore[union-attr]
                self.ticks[fd] += data.count(b"event: tick")
                if fd in waiting and self.ticks[fd] >= target[fd]:
                    waiting.discard(fd)
                    last = time.monotonic()
        return last - started

    def close(self) -> None:
        for sock in self.open:
            self.selector.unregister(sock)
            sock.close()
        self.open.clear()


def streams_main(args: argparse.Namespace) -> dict[str, Any]:
    streams = Streams(args.port)
    # A few requests first, so lazily built server state is not charged to the streams.
    for _ in range(3):
        _get(args.port, "/")
    baseline = settled_rss_kib(args.pid, time.monotonic() + 3)
    levels = []
    for level in (int(n) for n in args.levels.split(",")):
        streams.grow_to(level, timeout=args.timeout)
        if not args.no_publish:
            deadline = time.monotonic() + args.timeout
            while json.loads(_get(args.port, "/"))["listeners"] < level:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not all {level} streams subscribed")
                time.sleep(0.05)
        rss = settled_rss_kib(args.pid, time.monotonic() + 5)
        entry: dict[str, Any] = {
            "streams": level,
            "rss_kib": rss,
            "baseline_kib": baseline,
            "kib_per_stream": (rss - baseline) / level,
        }
        if not args.no_publish:
            times = [streams.fan_out(args.timeout) for _ in range(args.publishes)]
            entry["fanout_ms"] = [t * 1000 for t in times]
            entry["fanout_median_ms"] = statistics.median(times) * 1000
        levels.append(entry)
    streams.close()
    return {"levels": levels}


def firehose_main(args: argparse.Namespace) -> dict[str, Any]:
    end = b"\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", args.port), timeout=60) as sock:
        started = time.perf_counter()
        sock.sendall(f"GET /firehose?n={args.events} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        received = 0
        tail = b""
        while True:
            chunk = sock.recv(262144)
            if not chunk:
                break
            received += len(chunk)
            tail = (tail + chunk)[-len(end) :]
            if tail == end:
                break
        elapsed = time.perf_counter() - started
    return {
        "events": args.events,
        "seconds": elapsed,
        "events_per_s": args.events / elapsed,
        "bytes": received,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    streams = sub.add_parser("streams")
    streams.add_argument("port", type=int)
    streams.add_argument("pid", type=int)
    streams.add_argument("--levels", default="1000,5000,10000")
    streams.add_argument("--publishes", type=int, default=5)
    streams.add_argument("--no-publish", action="store_true")
    streams.add_argument("--timeout", type=float, default=120.0)
    firehose = sub.add_parser("firehose")
    firehose.add_argument("port", type=int)
    firehose.add_argument("--events", type=int, default=50000)
    args = parser.parse_args()
    result = streams_main(args) if args.mode == "streams" else firehose_main(args)
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
