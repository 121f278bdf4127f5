"""A bundled HTTP/1.1 load generator, used when ``wrk`` is not installed.

``python bench/loadgen.py URL --connections 50 --duration 5`` opens that many keep-alive
connections with raw gevent sockets, sends one GET at a time on each (no pipelining, like
wrk), reads each response by its Content-Length, and prints one JSON object: requests,
seconds, req/s, errors and latency percentiles in milliseconds. It is slower than wrk, so
run it pinned to a core of its own; the runner says which load generator produced a table.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402


class _Stats:
    __slots__ = ("errors", "latencies", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies: list[float] = []


def _read_response(sock: socket.socket, buffered: bytes) -> tuple[int, bytes]:
    """Read one response; return its status and the bytes after it."""
    data = buffered
    while True:
        end = data.find(b"\r\n\r\n")
        if end != -1:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    head = data[:end]
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
            break
    total = end + 4 + length
    while len(data) < total:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return status, data[total:]


def _worker(host: str, port: int, request: bytes, deadline: float, stats: _Stats) -> None:
    clock = time.perf_counter
    latencies = stats.latencies
    while clock() < deadline:
        try:
            sock = socket.create_connection((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            stats.errors += 1
            gevent.sleep(0.01)
            continue
        rest = b""
        try:
            while True:
                started = clock()
                if started >= deadline:
                    return
                sock.sendall(request)
                status, rest = _read_response(sock, rest)
                latencies.append(clock() - started)
                if status == 200:
                    stats.requests += 1
                else:
                    stats.errors += 1
        except OSError:
            stats.errors += 1
        finally:
            sock.close()


def run(url: str, connections: int, duration: float) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    stats = _Stats()
    started = time.perf_counter()
    deadline = started + duration
    workers = [gevent.spawn(_worker, host, port, request, deadline, stats) for _ in range(connections)]
    gevent.joinall(workers, timeout=duration + 10)
    gevent.killall(workers)
    elapsed = time.perf_counter() - started
    latencies = sorted(stats.latencies) or [0.0]

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": stats.requests,
        "seconds": elapsed,
        "rps": stats.requests / elapsed,
        "errors": stats.errors,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", "-c", type=int, default=50)
    parser.add_argument("--duration", "-d", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(run(args.url, args.connections, args.duration)))


if __name__ == "__main__":
    main()
