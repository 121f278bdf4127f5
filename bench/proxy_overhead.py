"""What ``proxy_request`` costs: requests/s through the proxy versus direct, in one run,
and how long after a client leaves a relayed event stream the upstream sees it go.

    python bench/proxy_overhead.py [--duration 5] [--connections 50] [--aborts 20]

Throughput: ``examples/upstream.py`` and ``examples/portal.py`` (whose ``/api/**`` is
``proxy_request``) run as ``python -m h3green`` processes; the load generator (``wrk`` when
installed, else ``bench/loadgen.py``) asks for ``/status`` directly, then for
``/api/status`` through the portal. Abort propagation: this process serves an upstream
event stream whose ``on_close`` records the time, a portal process relays it, and a raw
client reads the first event, closes its socket and waits for that ``on_close``.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

from h3green import H3, H3Event, Server, SSEWriter  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(module: str, port: int, **env: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "h3green", f"{module}:app", "--port", str(port), "--no-access-log"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{module} did not start")


def load(url: str, connections: int, duration: float, bundled: bool = False) -> dict[str, Any]:
    if shutil.which("wrk") and not bundled:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {"tool": "wrk", "rps": rps, "non_2xx": int(errors.group(1)) if errors else 0}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "loadgen.py"),
            url,
            "--connections",
            str(connections),
            "--duration",
            str(duration),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out)
    return {"tool": "loadgen", "rps": result["rps"], "non_2xx": result.get("errors", 0)}


def throughput(connections: int, duration: float, bundled: bool) -> dict[str, Any]:
    up_port, proxy_port = free_port(), free_port()
    upstream = start("examples.upstream", up_port)
    proxy = start("examples.portal", proxy_port, UPSTREAM_URL=f"http://127.0.0.1:{up_port}")
    try:
        load(f"http://127.0.0.1:{proxy_port}/api/status", connections, 1, bundled)  # warm the pool
        direct = load(f"http://127.0.0.1:{up_port}/status", connections, duration, bundled)
        proxied = load(f"http://127.0.0.1:{proxy_port}/api/status", connections, duration, bundled)
    finally:
        for proc in (proxy, upstream):
            proc.kill()
            proc.wait()
    return {
        "direct_rps": round(direct["rps"]),
        "proxied_rps": round(proxied["rps"]),
        "ratio": round(proxied["rps"] / direct["rps"], 3),
        "tool": direct["tool"],
        "non_2xx": direct["non_2xx"] + proxied["non_2xx"],
    }


def abort_to_close(rounds: int) -> dict[str, Any]:
    closed: list[gevent.event.Event] = []
    closed_at: list[float] = []
    app = H3()

    @app.get("/stream")
    def stream(event: H3Event) -> None:
        event.start_sse()
        done = gevent.event.Event()
        closed.append(done)

        def run(writer: SSEWriter) -> None:
            writer.on_close(lambda: (closed_at.append(time.monotonic()), done.set()))
            writer.send_event("first")
            while writer.is_active:
                time.sleep(0.5)

        event.set_stream_callback(run)

    server = Server(app, port=0, access_log=False)
    server.start()
    proxy_port = free_port()
    proxy = start("examples.portal", proxy_port, UPSTREAM_URL="http://{}:{}".format(*server.address))
    delays = []
    try:
        for _ in range(rounds):
            sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
            sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: bench\r\n\r\n")
            received = b""
            while b"data: first" not in received:
                received += sock.recv(65536)
            count = len(closed_at)
            left = time.monotonic()
            sock.close()
            if not closed[-1].wait(10):
                raise SystemExit("the upstream never saw the client go")
            assert len(closed_at) == count + 1
            delays.append((closed_at[-1] - left) * 1000)
    finally:
        proxy.kill()
        proxy.wait()
        server.stop(timeout=1)
    return {
        "rounds": rounds,
        "median_ms": round(statistics.median(delays), 2),
        "max_ms": round(max(delays), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--aborts", type=int, default=20)
    parser.add_argument("--loadgen", action="store_true", help="use bench/loadgen.py even if wrk exists")
    args = parser.parse_args()
    result = {
        "throughput": throughput(args.connections, args.duration, args.loadgen),
        "abort_to_upstream_close": abort_to_close(args.aborts),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
