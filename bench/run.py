"""h3green's benchmark: h3green and its peers under the same load, in one run.

    python bench/run.py            # the full run (about 20 minutes on a 2-core machine)
    python bench/run.py --quick    # smoke mode: every server and figure, briefly

Strategy: every server under test is its own process pinned to one core and the load
generator is pinned to another, so each server gets one core as it would per worker in
production. All HTTP servers start together and are measured in interleaved rounds (round 1
of every server, then round 2...), so drift in the machine's load spreads over all of
them; the table reports medians over the rounds and the ratios that decide the targets
come from the same run. Absolute numbers move with the machine; ratios much less.

HTTP peers: the floor (gevent StreamServer, canned reply, no parsing: ``floor.py``), the
ceiling of this design (gevent StreamServer + a bare httptools loop:
``bare_httptools.py``), the bare h11 loop, uvicorn raw ASGI, uvicorn + Starlette, uvicorn
+ FastAPI, gevent.pywsgi, gunicorn -k gevent + Flask, and h3green (httptools, h11, access
log on, under gunicorn). A peer whose package is not installed is skipped with a note.

Load comes from ``wrk`` when it is installed (one thread, 50 keep-alive connections) and
from ``bench/loadgen.py`` otherwise; the header says which. The SSE figures
(``bench/sse_bench.py``) come from ``bench/sse_client.py`` in a separate process, for
h3green and the SSE peers alike.

The markdown table goes to stdout and every number to ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from procs import (
    BENCH,
    LOAD_CORE,
    PY,
    SERVER_CORE,
    STARTED_PIDS,
    Peer,
    cpu_seconds,
    gunicorn_cmd,
    missing_modules,
    pinned,
    running,
    script_cmd,
    uvicorn_cmd,
    uvicorn_flavour,
)
from report import http_targets, markdown, sse_targets
from sse_bench import measure_sse

WORKLOADS = {"hello": "/", "json-params": "/users/42?fields=name,email"}
H3 = "h3green"
VERSIONED = ("h3green", "gevent", "greenlet", "h11", "httptools", "gunicorn", "flask", "uvicorn", "uvloop",
             "starlette", "fastapi", "sse-starlette")  # fmt: skip


def _h3worker_available() -> str:
    """Empty when h3green's gunicorn worker imports, else why it is skipped."""
    try:
        import h3green.workers  # noqa: F401
    except Exception as exc:  # ImportError, or a worker module still being written
        return f"h3green.workers not importable ({type(exc).__name__}: {exc})"
    return ""


def ref_peer(ref: str, into: Path) -> Peer:
    """h3green as of git *ref*, unpacked under *into*: before and after in the same run."""
    archive = subprocess.run(
        ["git", "-C", str(BENCH.parent), "archive", "--format=tar", ref, "h3green"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    servers = str(BENCH / "servers.py")
    return Peer(f"h3green@{ref}", script_cmd(servers, "h3green"), f"h3green as of {ref}", [str(into)])


def peers() -> tuple[list[Peer], list[str]]:
    servers = str(BENCH / "servers.py")
    uv = uvicorn_flavour()
    found = [
        Peer(H3, script_cmd(servers, "h3green"), "h3green.Server (httptools parser), access log off"),
        Peer("h3green/h11", script_cmd(servers, "h3green-h11"), "h3green.Server on the h11 parser"),
        Peer("h3green+log", script_cmd(servers, "h3green-log"), "access log on, to a file (access_log_file)"),
        Peer(
            "h3green+logging",
            script_cmd(servers, "h3green-logging"),
            "access log through logging, FileHandler",
        ),
        Peer(
            "h3green/gunicorn",
            gunicorn_cmd("h3green.workers.H3Worker", "apps:h3_app"),
            "gunicorn -k H3Worker, 1 worker",
        ),
        Peer(
            "floor",
            script_cmd(str(BENCH / "floor.py")),
            "gevent StreamServer, canned reply, no parsing (floor)",
        ),
        Peer(
            "bare httptools",
            script_cmd(str(BENCH / "bare_httptools.py")),
            "gevent StreamServer + httptools loop (ceiling)",
        ),
        Peer("bare h11", script_cmd(str(BENCH / "bare_h11.py")), "gevent StreamServer + h11 loop"),
        Peer("uvicorn", uvicorn_cmd("apps:asgi_app"), f"uvicorn ({uv}), raw ASGI"),
        Peer("uvicorn+starlette", uvicorn_cmd("apps:starlette_app"), f"uvicorn ({uv}) + Starlette"),
        Peer(
            "uvicorn+fastapi", uvicorn_cmd("apps:fastapi_app"), f"uvicorn ({uv}) + FastAPI, async endpoints"
        ),
        Peer("pywsgi", script_cmd(servers, "pywsgi"), "gevent.pywsgi, raw WSGI, TCP_NODELAY"),
        Peer(
            "gunicorn+flask", gunicorn_cmd("gevent", "apps:flask_app"), "gunicorn -k gevent, Flask, 1 worker"
        ),
    ]
    notes = []
    why = _h3worker_available()
    if why:
        found = [p for p in found if p.name != "h3green/gunicorn"]
        notes.append(f"h3green/gunicorn skipped: {why}")
    needs = {
        "uvicorn": ("uvicorn",),
        "uvicorn+starlette": ("uvicorn", "starlette"),
        "uvicorn+fastapi": ("uvicorn", "fastapi"),
        "gunicorn+flask": ("gunicorn", "flask"),
    }
    for name, modules in needs.items():
        if missing := missing_modules(*modules):
            found = [p for p in found if p.name != name]
            notes.append(f"{name} skipped: {', '.join(missing)} not installed (pip install h3green[bench])")
    return found, notes


# -- load -----------------------------------------------------------------------------


def wrk_version() -> str | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    match = re.search(r"wrk (\S+)", out.stdout + out.stderr)
    return f"wrk {match.group(1)}" if match else "wrk"


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}[match.group(2)]


def load_wrk(url: str, connections: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", url],
        capture_output=True, text=True, check=True, preexec_fn=pinned(LOAD_CORE),
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # Anchored: "87.99%" in the thread-stats table must not read as the 99th percentile.
    p50 = _wrk_ms(re.search(r"^\s+50%\s+(\S+)$", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _wrk_ms(re.search(r"^\s+99%\s+(\S+)$", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(n) for n in match.groups())
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors, "requests": requests}


def load_builtin(url: str, connections: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [PY, str(BENCH / "loadgen.py"), url, "-c", str(connections), "-d", str(duration)],
        capture_output=True, text=True, check=True, preexec_fn=pinned(LOAD_CORE),
    ).stdout  # fmt: skip
    return json.loads(out)  # type: ignore[no-any-return]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in VERSIONED},
        "load_before": os.getloadavg(),
    }


# -- main -----------------------------------------------------------------------------


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: tiny loads, one run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per HTTP measurement")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "builtin"), default="auto")
    parser.add_argument("--sse-levels", default="1000,5000,10000")
    parser.add_argument("--publishes", type=int, default=5, help="fan-outs timed per level")
    parser.add_argument("--events", type=int, default=100000, help="events per throughput run")
    parser.add_argument("--only", help="comma-separated servers to measure (default: all)")
    parser.add_argument("--compare-ref", help="also measure h3green as of this git ref (before/after)")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-sse", action="store_true")
    parser.add_argument("--sse-only", help="comma-separated SSE servers to measure (default: all)")
    parser.add_argument("--ping", type=float, default=15.0, help="keep-alive ping of the SSE peers, seconds")
    parser.add_argument("--detect-samples", type=int, default=3, help="streams closed per disconnect figure")
    parser.add_argument(
        "--hb-streams", type=int, default=5000, help="idle streams for the heartbeat CPU figure"
    )
    parser.add_argument("--hb-interval", type=float, default=1.0, help="their heartbeat, seconds")
    parser.add_argument("--hb-window", type=float, default=10.0, help="seconds of server CPU measured")
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "latest.json")
    args = parser.parse_args(argv)
    args.json = args.json.resolve()  # the servers run in bench/, the log paths must not move
    if args.quick:
        args.runs, args.duration, args.sse_levels = 1, 0.3, "20,50"
        args.publishes, args.events = 1, 2000
        args.ping, args.detect_samples = 0.3, 2
        args.hb_streams, args.hb_interval, args.hb_window = 50, 0.3, 0.6
    return args


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through running(), which stops the servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    fd_limit = raise_fd_limit()
    needed = max(int(n) for n in args.sse_levels.split(","))
    if not args.skip_sse and fd_limit < needed + 100:
        print(f"warning: RLIMIT_NOFILE is {fd_limit}; SSE levels above it will fail", file=sys.stderr)
    wrk = wrk_version()
    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and wrk is not None)
    if use_wrk and wrk is None:
        raise SystemExit("--loadgen wrk: wrk is not installed")
    if use_wrk and args.duration < 1:
        args.duration = 1.0  # wrk counts whole seconds
    load = load_wrk if use_wrk else load_builtin
    all_peers, notes = peers()
    if args.only:
        wanted = set(args.only.split(","))
        all_peers = [p for p in all_peers if p.name in wanted]
    scratch = tempfile.TemporaryDirectory(prefix="h3green-bench-")
    if args.compare_ref:
        all_peers.insert(1, ref_peer(args.compare_ref, Path(scratch.name)))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    log_dir = args.json.parent / "logs"
    log_dir.mkdir(exist_ok=True)
    report: dict[str, Any] = {
        "machine": machine(),
        "server_core": min(SERVER_CORE) if SERVER_CORE else "-",
        "load_core": min(LOAD_CORE) if LOAD_CORE else "-",
        "loadgen": f"{wrk} (-t1)" if use_wrk else "bench/loadgen.py (gevent, wrk not installed)",
        "connections": args.connections,
        "duration": args.duration,
        "runs": args.runs,
        "publishes": args.publishes,
        "notes": notes,
        "http": {},
        "sse": None,
    }
    if not args.skip_http and all_peers:
        samples: dict[str, dict[str, list[dict[str, float]]]] = {
            p.name: {w: [] for w in WORKLOADS} for p in all_peers
        }
        with running(all_peers, log_dir) as servers:
            for server in servers if not args.quick else ():  # warm-up: lazy imports, caches
                for path in WORKLOADS.values():
                    load(f"http://127.0.0.1:{server.port}{path}", args.connections, 1 if use_wrk else 0.2)
            for run in range(args.runs):
                for workload, path in WORKLOADS.items():
                    for server in servers:
                        # CPU per request barely moves when other work shares the machine,
                        # unlike req/s: it is the figure to compare before/after changes.
                        cpu = cpu_seconds(server.proc.pid)
                        sample = load(
                            f"http://127.0.0.1:{server.port}{path}", args.connections, args.duration
                        )
                        cpu = cpu_seconds(server.proc.pid) - cpu
                        sample["cpu_us"] = cpu / max(1, sample["requests"]) * 1e6
                        samples[server.peer.name][workload].append(sample)
                        print(f"run {run + 1} {workload:11} {server.peer.name:16} {sample['rps']:9,.0f} req/s",
                              file=sys.stderr)  # fmt: skip
        for peer in all_peers:
            row: dict[str, Any] = {"note": peer.note}
            for workload, runs in samples[peer.name].items():
                row[workload] = {
                    "rps": statistics.median(s["rps"] for s in runs),
                    "p50_ms": statistics.median(s["p50_ms"] for s in runs),
                    "p99_ms": statistics.median(s["p99_ms"] for s in runs),
                    "cpu_us": statistics.median(s["cpu_us"] for s in runs),
                    "errors": sum(s["errors"] for s in runs),
                    "runs": [s["rps"] for s in runs],
                }
            report["http"][peer.name] = row
    if not args.skip_sse:
        ref_dir = Path(scratch.name) if args.compare_ref else None
        report["sse"] = measure_sse(args, log_dir, report["notes"], ref_dir)
    report["load_after"] = os.getloadavg()
    report["server_pids"] = STARTED_PIDS
    report["targets"] = http_targets(report["http"], args.compare_ref)
    if report["sse"]:
        report["targets"] += sse_targets(report["sse"])
    scratch.cleanup()
    args.json.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
