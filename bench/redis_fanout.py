"""Channels across processes: Redis fan-out beside the in-process channel, in one run.

    python bench/redis_fanout.py            # 10k streams, 1,000 listeners, 5,000 publishes
    python bench/redis_fanout.py --quick    # smoke mode: a few streams, a few seconds

Strategy: two servers under gunicorn with ``h3green.workers.H3Worker``, one after the
other, measured the same way by one client process (one selector over every stream):

* ``memory, 1 worker``: ``Channel(history=20_000)`` in one process;
* ``redis, 4 workers``: ``Channel("bench", backend=RedisBackend(...))`` in each of four
  workers, over a ``redis-server`` this script starts (no persistence, ephemeral port).

For each: (1) 1,000 streams, then ``GET /burst?n=5000`` publishes 5,000 events into the
channel from ``--publishers`` greenlets of one handler (concurrent requests, as in an
app), each as fast as ``publish`` returns: publishes per second as the publisher sees them, and until the last listener has read the last event; (2) 10k streams,
then ``GET /publish`` five times: the time from the ``publish`` call (the server's
``time.monotonic()``, system-wide on Linux) to the last of the 10k streams reading it,
median. The kernel spreads the streams over the workers. The markdown table goes to stdout
and every number to ``bench/results/redis_fanout.json``.

The same file is the app gunicorn serves (``redis_fanout:app``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
MARK = b"event: tick"

# -- the app (imported by gunicorn's workers) ---------------------------------------------

if os.environ.get("H3GREEN_FANOUT_APP"):
    from h3green import H3, H3Event
    from h3green.sse import Channel

    app = H3()
    # Queues and a log deep enough for a burst published without a pause (the figure is
    # the channel's throughput, not its slow-subscriber policy or its trimming).
    queues = {"max_queue_events": 100_000, "max_queue_bytes": 64 << 20}
    if os.environ.get("REDIS_URL"):
        from h3green.redis import RedisBackend

        channel = Channel("bench", backend=RedisBackend(os.environ["REDIS_URL"]), history=20_000, **queues)
    else:
        channel = Channel(history=20_000, **queues)

    @app.get("/stream")
    def stream(event: H3Event) -> None:
        event.start_sse()
        event.set_stream_callback(channel.listen)

    @app.get("/publish")
    def publish(event: H3Event) -> dict[str, float]:
        started = time.monotonic()
        channel.publish("t", event="tick")
        return {"t0": started}

    @app.get("/burst")
    def burst(event: H3Event) -> dict[str, float]:
        import gevent

        count = int(event.get_query("n") or "1000")
        publishers = int(event.get_query("c") or "1")

        def run(share: int) -> None:
            for _ in range(share):
                channel.publish("t", event="tick")

        started = time.monotonic()
        gevent.joinall([gevent.spawn(run, count // publishers) for _ in range(publishers)], raise_error=True)
        return {"t0": started, "seconds": time.monotonic() - started}


# -- the client ---------------------------------------------------------------------------


def _get(port: int, path: str) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    answer: dict[str, Any] = json.loads(response[response.index(b"\r\n\r\n") + 4 :])
    return answer


class Streams:
    """Event streams to ``/stream`` driven by one selector, counting ``tick`` events."""

    def __init__(self, port: int) -> None:
        import selectors

        self.port = port
        self.selector = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.ticks: dict[int, int] = {}
        self.tails: dict[int, bytes] = {}

    def grow_to(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        request = b"GET /stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
        while len(self.socks) < count:
            batch = []
            for _ in range(min(200, count - len(self.socks) - len(batch))):
                sock = socket.create_connection(("127.0.0.1", self.port))
                sock.sendall(request)
                batch.append(sock)
            for sock in batch:
                sock.settimeout(max(1.0, deadline - time.monotonic()))
                head = b""
                while b"\r\n\r\n" not in head:
                    data = sock.recv(4096)
                    if not data:
                        raise ConnectionError("a stream closed before its head")
                    head += data
                if not head.startswith(b"HTTP/1.1 200"):
                    raise ConnectionError(f"stream refused: {head[:60]!r}")
                sock.setblocking(False)
                self.selector.register(sock, 1)  # EVENT_READ
                self.socks.append(sock)
                self.ticks[sock.fileno()] = head.count(MARK)
                self.tails[sock.fileno()] = b""

    def pump(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            fd = sock.fileno()
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("the server closed a stream")
            joined = self.tails[fd] + data
            self.ticks[fd] += joined.count(MARK) - self.tails[fd].count(MARK)
            self.tails[fd] = joined[-(len(MARK) - 1) :]

    def wait_all(self, target: dict[int, int], timeout: float) -> float:
        """Pump until every stream has its target count; monotonic time of the last."""
        waiting = {fd for fd, n in target.items() if self.ticks[fd] < n}
        last = time.monotonic()
        deadline = last + timeout
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} of {len(target)} streams short of their events")
            self.pump(1.0)
            done = {fd for fd in waiting if self.ticks[fd] >= target[fd]}
            if done:
                waiting -= done
                last = time.monotonic()
        return last

    def settle(self, port: int, timeout: float = 120) -> None:
        """Publish until every stream has an event: each is subscribed from then on."""
        base = dict(self.ticks)
        deadline = time.monotonic() + timeout
        while any(self.ticks[fd] <= base[fd] for fd in base):
            if time.monotonic() > deadline:
                raise TimeoutError("streams never subscribed")
            _get(port, "/publish")
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                self.pump(0.02)
        end = time.monotonic() + 0.3  # the last warm-up events drain
        while time.monotonic() < end:
            self.pump(0.05)

    def target(self, more: int) -> dict[int, int]:
        return {fd: n + more for fd, n in self.ticks.items()}

    def close(self) -> None:
        for sock in self.socks:
            self.selector.unregister(sock)
            sock.close()
        self.socks.clear()


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], int]:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
        ],
        stdout=subprocess.DEVNULL,
    )
    _wait_port(port)
    return proc, port


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_gunicorn(workers: int, redis_url: str | None, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {**os.environ, "H3GREEN_FANOUT_APP": "1", "H3GREEN_SSE_HEARTBEAT": "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH.parent), env.get("PYTHONPATH", "")])
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    command = [
        sys.executable, "-m", "gunicorn", "-k", "h3green.workers.H3Worker", "-w", str(workers),
        "--worker-connections", "12000", "--chdir", str(BENCH), "-b", f"127.0.0.1:{port}",
        "--log-level", "info", "--error-logfile", str(log), "redis_fanout:app",
    ]  # fmt: skip
    log.touch()
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while log.read_text(errors="replace").count("Booting worker") < workers:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not boot {workers} workers:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    _wait_port(port)
    time.sleep(0.2)  # the last worker booted is accepting too
    return proc, port


def measure(
    port: int, *, listeners: int, burst: int, publishers: int, streams: int, fanouts: int
) -> dict[str, Any]:
    client = Streams(port)
    try:
        client.grow_to(listeners)
        client.settle(port)
        target = client.target(burst)
        answer = _get(port, f"/burst?n={burst}&c={publishers}")
        last = client.wait_all(target, timeout=300)
        result: dict[str, Any] = {
            "listeners": listeners,
            "burst": burst,
            "publishers": publishers,
            "publish_per_s": burst / answer["seconds"],
            "delivered_per_s": burst / (last - answer["t0"]),
        }
        client.grow_to(streams)
        client.settle(port)
        times = []
        for _ in range(fanouts):
            target = client.target(1)
            started = _get(port, "/publish")["t0"]
            times.append((client.wait_all(target, timeout=120) - started) * 1000)
        result.update(streams=streams, fanout_ms=times, fanout_median_ms=statistics.median(times))
        return result
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: tiny numbers")
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--fanouts", type=int, default=5)
    parser.add_argument("--publishers", type=int, default=8, help="concurrent publishing greenlets")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "redis_fanout.json")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.listeners, args.burst, args.fanouts = 60, 20, 400, 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.streams + 1000)), hard))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc, redis_port = start_redis(tmp)
        try:
            for name, workers, url in (
                ("memory, 1 worker", 1, None),
                (f"redis, {args.workers} workers", args.workers, f"redis://127.0.0.1:{redis_port}/0"),
            ):
                proc, port = start_gunicorn(workers, url, Path(tmp) / f"gunicorn-{workers}.log")
                try:
                    result = measure(
                        port,
                        listeners=args.listeners,
                        burst=args.burst,
                        publishers=args.publishers,
                        streams=args.streams,
                        fanouts=args.fanouts,
                    )
                finally:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(30)
                rows.append({"server": name, **result})
        finally:
            redis_proc.kill()
            redis_proc.wait()
    lines = [
        f"| server | publish → last of {args.streams:,} streams, median ms | publishes/s ({args.listeners:,} "
        "listeners, publisher) | publishes/s (delivered to all) |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['server']} | {row['fanout_median_ms']:.1f} | {row['publish_per_s']:,.0f} | "
            f"{row['delivered_per_s']:,.0f} |"
        )
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "quick": args.quick}, indent=2) + "\n")


if __name__ == "__main__":
    main()
