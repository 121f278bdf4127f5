"""SSE clients for the benchmark, in a process of their own (one epoll loop, no gevent).

``python bench/sse_client.py streams PORT SERVER_PID --levels 1000,5000,10000 --publishes 5``
opens idle streams to ``/stream`` level by level and, at each level, reads the server's RSS
from ``/proc`` (same machine) and times ``/publish`` fan-outs: the published event carries
the server's ``time.monotonic()`` at the publish call, which is system-wide on Linux, so
publish-to-last-reader is measured across the two processes. With ``--no-publish`` only
memory is measured. Every server asked must answer ``GET /`` with ``{"listeners": n}``.

``python bench/sse_client.py firehose PORT --events 50000`` reads one stream as fast as it
can and reports events per second.

``python bench/sse_client.py detect PORT --samples 3 --spread 15`` opens streams with a
token each, closes them (spread over *spread* seconds, so their phases against a
server's ping interval differ) and asks the server's ``/detected?token=`` when each
stream's generator or callback ended: that time minus the client's ``time.monotonic()``
at the close is how long the server took to notice.

``python bench/sse_client.py heartbeat PORT SERVER_PID --streams 5000 --interval 1``
holds idle streams with a short per-stream heartbeat and reports the server's CPU
seconds over a window divided by the heartbeats that arrived in it.

All print one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import selectors
import socket
import statistics
import time
from typing import Any

from procs import cpu_seconds

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


def _head_value(head: bytes, name: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None


class Streams:
    """Many idle event-stream connections, driven by one selector.

    *source* binds every connection to that local address (``127.0.0.x``), so several
    clients together can open more streams than one address has ephemeral ports. With
    *retry_refused*, a stream answered 503 (a worker at its connection limit) is opened
    again instead of failing the run; ``refused`` counts them.
    """

    def __init__(
        self, port: int, path: str = "/stream", source: str | None = None, *, retry_refused: bool = False
    ) -> None:
        self.port = port
        self.retry_refused = retry_refused
        self.refused = 0
        self.rebalanced = 0
        self.per_worker: collections.Counter[str] = collections.Counter()
        self.source = (source, 0) if source else None
        self.selector = selectors.DefaultSelector()
        self.open: list[socket.socket] = []
        self.ticks: dict[int, int] = {}
        #: The ``x-worker`` header of each stream's head, when the server sends one.
        self.worker: dict[int, str] = {}
        self._request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()

    def grow_to(self, count: int, timeout: float, max_per_worker: int | None = None) -> None:
        """Open streams until *count* are open.

        With *max_per_worker*, a stream whose head names a worker (``x-worker``) on which
        this client already holds that many is closed and opened again (``rebalanced``):
        gunicorn's workers share one listening socket and take connections unevenly.
        """
        deadline = time.monotonic() + timeout
        pending: dict[int, tuple[socket.socket, bytes]] = {}
        selector = self.selector
        while len(self.open) < count or pending:
            while len(pending) < _IN_FLIGHT and len(self.open) + len(pending) < count:
                sock = socket.create_connection(("127.0.0.1", self.port), source_address=self.source)
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
                try:
                    data = pending[fd][1] + sock.recv(65536)
                except ConnectionResetError:
                    if not self.retry_refused:
                        raise
                    data = b""
                if not data and not self.retry_refused:
                    raise ConnectionError("the server closed a stream before answering")
                if not data or _HEAD_END in data:
                    if self.retry_refused and (not data or data.startswith(b"HTTP/1.1 503")):
                        # That worker is full; like an EventSource, try again (the next
                        # connection may land on another gunicorn worker).
                        del pending[fd]
                        selector.unregister(sock)
                        sock.close()
                        self.refused += 1
                        continue
                    if not data.startswith(b"HTTP/1.1 200"):
                        raise ConnectionError(f"stream refused: {data[:60]!r}")
                    del pending[fd]
                    worker = _head_value(data[: data.index(_HEAD_END)], b"x-worker")
                    if worker and max_per_worker and self.per_worker[worker] >= max_per_worker:
                        # This client already holds its share on that worker: reconnect.
                        selector.unregister(sock)
                        sock.close()
                        self.rebalanced += 1
                        continue
                    self.open.append(sock)
                    self.ticks[fd] = 0
                    if worker:
                        self.worker[fd] = worker
                        self.per_worker[worker] += 1
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

    def watch(self, seconds: float, late_after: float | None = None) -> dict[str, Any]:
        """Read every stream for *seconds*: comment lines seen and each stream's longest silence.

        A stream's silence is the time between two arrivals, counting the window's start
        and end as arrivals, so a stream that sent nothing shows the whole window. With
        *late_after*, streams silent for longer than that are counted as ``late``.
        """
        started = time.monotonic()
        end = started + seconds
        last = dict.fromkeys(self.ticks, started)
        longest = dict.fromkeys(self.ticks, 0.0)
        beats = 0
        while (now := time.monotonic()) < end:
            for key, _ in self.selector.select(min(0.5, end - now)):
                sock = key.fileobj
                data = sock.recv(65536)  # type: ignore[union-attr]
                if not data:
                    raise ConnectionError("the server closed a stream")
                fd = sock.fileno()  # type: ignore[union-attr]
                arrived = time.monotonic()
                longest[fd] = max(longest[fd], arrived - last[fd])
                last[fd] = arrived
                beats += data.count(b"\n:")  # a comment line, after a chunk-size line
                self.ticks[fd] += data.count(b"event: tick")
        now = time.monotonic()
        silences = sorted(max(gap, now - last[fd]) for fd, gap in longest.items())
        result: dict[str, Any] = {
            "seconds": now - started,
            "beats": beats,
            "longest_silence_s": silences[-1] if silences else 0.0,
            "silence_p99_s": silences[int(0.99 * (len(silences) - 1))] if silences else 0.0,
        }
        if late_after is not None:
            result["late"] = sum(1 for gap in silences if gap > late_after)
        return result

    def await_ticks(self, worker: str | None, want: int, timeout: float) -> dict[str, Any]:
        """Read until every stream (of *worker*, if given) has seen *want* ticks.

        Returns the ``time.monotonic()`` of the last of them and how many never got there.
        """
        waiting = {
            fd
            for fd, n in self.ticks.items()
            if n < want and (worker is None or self.worker.get(fd) == worker)
        }
        last = time.monotonic()
        deadline = last + timeout
        while waiting and time.monotonic() < deadline:
            for key, _ in self.selector.select(0.5):
                sock = key.fileobj
                data = sock.recv(65536)  # type: ignore[union-attr]
                if not data:
                    raise ConnectionError("the server closed a stream")
                fd = sock.fileno()  # type: ignore[union-attr]
                self.ticks[fd] += data.count(b"event: tick")
                if fd in waiting and self.ticks[fd] >= want:
                    waiting.discard(fd)
                    last = time.monotonic()
        return {"last": last, "missing": len(waiting)}

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
        _wait_listeners(args.port, level, args.timeout)  # every subscriber set up before RSS is read
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


def _wait_listeners(port: int, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while json.loads(_get(port, "/"))["listeners"] < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not all {count} streams subscribed")
        time.sleep(0.02)


def detect_main(args: argparse.Namespace) -> dict[str, Any]:
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    socks = []
    for i in range(args.samples):
        streams = Streams(args.port, f"/stream?token={tag}-{i}")
        streams.grow_to(1, timeout=30)
        socks.append(streams)
    _wait_listeners(args.port, args.samples, 30)
    time.sleep(0.2)  # every generator is parked in its wait, not still starting
    closed: list[float] = []
    for i, streams in enumerate(socks):
        if i:
            time.sleep(args.spread / args.samples)
        closed.append(time.monotonic())
        streams.close()
    delays: list[float | None] = [None] * args.samples
    deadline = time.monotonic() + args.timeout
    while None in delays and time.monotonic() < deadline:
        for i, delay in enumerate(delays):
            if delay is None:
                ended = json.loads(_get(args.port, f"/detected?token={tag}-{i}"))["t"]
                if ended is not None:
                    delays[i] = ended - closed[i]
        time.sleep(0.02)
    noticed = [d * 1000 for d in delays if d is not None]
    return {
        "samples": args.samples,
        "detected_ms": noticed,
        "undetected": delays.count(None),
        "timeout_s": args.timeout,
        "median_ms": statistics.median(noticed) if noticed else None,
    }


def heartbeat_main(args: argparse.Namespace) -> dict[str, Any]:
    streams = Streams(args.port, f"/stream?heartbeat={args.interval}")
    streams.grow_to(args.streams, timeout=args.timeout)
    # Let every stream's first beat come and the opening burst's work finish.
    streams.watch(args.interval * 1.5)
    cpu = cpu_seconds(args.pid)
    seen = streams.watch(args.window)
    cpu = cpu_seconds(args.pid) - cpu
    streams.close()
    beats = max(1, seen["beats"])
    return {
        "streams": args.streams,
        "interval_s": args.interval,
        "window_s": seen["seconds"],
        "beats": seen["beats"],
        "cpu_s": cpu,
        "us_per_beat": cpu / beats * 1e6,
        "core_share": cpu / seen["seconds"],
        "longest_silence_s": seen["longest_silence_s"],
    }


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
    detect = sub.add_parser("detect")
    detect.add_argument("port", type=int)
    detect.add_argument("--samples", type=int, default=3)
    detect.add_argument("--spread", type=float, default=0.0, help="seconds over which the closes spread")
    detect.add_argument("--timeout", type=float, default=60.0)
    heartbeat = sub.add_parser("heartbeat")
    heartbeat.add_argument("port", type=int)
    heartbeat.add_argument("pid", type=int)
    heartbeat.add_argument("--streams", type=int, default=5000)
    heartbeat.add_argument("--interval", type=float, default=1.0)
    heartbeat.add_argument("--window", type=float, default=10.0)
    heartbeat.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    modes = {
        "streams": streams_main,
        "firehose": firehose_main,
        "detect": detect_main,
        "heartbeat": heartbeat_main,
    }
    result = modes[args.mode](args)
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
