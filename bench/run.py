"""h3green's benchmark: h3green and its peers under the same load, in one run.

    python bench/run.py            # the full run (several minutes)
    python bench/run.py --quick    # smoke mode: every server and figure, a few seconds

Strategy: every server under test is its own process pinned to one core and the load
generator is pinned to another, so each server gets one core as it would per worker in
production. All HTTP servers start together and are measured in interleaved rounds (round 1
of every server, then round 2...), so drift in the machine's load spreads over all of
them; the table reports medians over the rounds and the ratios that decide the targets
come from the same run. Absolute numbers move with the machine; ratios much less.

Load comes from ``wrk`` when it is installed (one thread, 50 keep-alive connections) and
from ``bench/loadgen.py`` otherwise; the header says which. The SSE figures use
``bench/sse_client.py`` in a separate process: server RSS per idle stream at 1k/5k/10k
streams (RSS read from ``/proc``), the time from one ``Channel.publish`` to the last of
those streams reading the event, and events per second on one stream.

The markdown table goes to stdout and every number to ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
PY = sys.executable
WORKLOADS = {"hello": "/", "json-params": "/users/42?fields=name,email"}
H3 = "h3green"


@dataclass
class Peer:
    name: str
    command: Callable[[int], list[str]]
    note: str = ""
    #: Directories put first on the server's PYTHONPATH (an older h3green, for --compare-ref).
    path: list[str] = field(default_factory=list)


def _script(*args: str) -> Callable[[int], list[str]]:
    return lambda port: [PY, *args, str(port)]


def _gunicorn(worker: str, app: str) -> Callable[[int], list[str]]:
    return lambda port: [
        PY, "-m", "gunicorn", "-k", worker, "-w", "1", "--chdir", str(BENCH),
        "-b", f"127.0.0.1:{port}", "--log-level", "warning", app,
    ]  # fmt: skip


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
    return Peer(f"h3green@{ref}", _script(servers, "h3green"), f"h3green as of {ref}", [str(into)])


def peers() -> tuple[list[Peer], list[str]]:
    servers = str(BENCH / "servers.py")
    found = [
        Peer(H3, _script(servers, "h3green"), "h3green.Server (httptools parser), access log off"),
        Peer("h3green/h11", _script(servers, "h3green-h11"), "h3green.Server on the h11 parser"),
        Peer("h3green+log", _script(servers, "h3green-log"), "access log on, INFO, to a file"),
        Peer(
            "h3green/gunicorn",
            _gunicorn("h3green.workers.H3Worker", "apps:h3_app"),
            "gunicorn -k H3Worker, 1 worker",
        ),
        Peer("bare h11", _script(str(BENCH / "bare_h11.py")), "gevent StreamServer + h11 loop (ceiling)"),
        Peer("pywsgi", _script(servers, "pywsgi"), "gevent.pywsgi, raw WSGI, TCP_NODELAY"),
        Peer("gunicorn+flask", _gunicorn("gevent", "apps:flask_app"), "gunicorn -k gevent, Flask, 1 worker"),
    ]
    notes = []
    why = _h3worker_available()
    if why:
        found = [p for p in found if p.name != "h3green/gunicorn"]
        notes.append(f"h3green/gunicorn skipped: {why}")
    return found, notes


# -- processes ------------------------------------------------------------------------


def _cores() -> tuple[set[int] | None, set[int] | None]:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return {cores[0]}, {cores[1]}


SERVER_CORE, LOAD_CORE = _cores()


def _pinned(cores: set[int] | None) -> Callable[[], None] | None:
    if cores is None:
        return None
    return lambda: os.sched_setaffinity(0, cores)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


STARTED_PIDS: list[int] = []  # reported, so a test can check that none outlives the run


@dataclass
class Running:
    peer: Peer
    port: int
    proc: subprocess.Popen[bytes]
    log: Any = field(repr=False)


def start(peer: Peer, log_dir: Path) -> Running:
    port = free_port()
    # Open as long as the server runs; stop() closes it.
    log = open(log_dir / f"{re.sub(r'[^a-z0-9]+', '-', peer.name.lower())}.log", "wb")  # noqa: SIM115
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([*peer.path, str(BENCH), os.environ.get("PYTHONPATH", "")])
    )
    env["H3GREEN_BENCH_LOG"] = str(log_dir / "access.log")
    # The runner starts no threads, so preexec_fn (pinning the child to its core) is safe.
    proc = subprocess.Popen(
        peer.command(port), cwd=BENCH, stdout=log, stderr=subprocess.STDOUT, env=env,
        preexec_fn=_pinned(SERVER_CORE), start_new_session=True,  # noqa: PLW1509
    )  # fmt: skip
    STARTED_PIDS.append(proc.pid)
    return Running(peer, port, proc, log)


def wait_ready(server: Running, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{server.port}/"
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.peer.name} exited with {server.proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{server.peer.name} not answering after {timeout} s")
        time.sleep(0.1)


def stop(server: Running) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    server.log.close()


@contextlib.contextmanager
def running(selected: list[Peer], log_dir: Path) -> Iterator[list[Running]]:
    started: list[Running] = []
    try:
        for peer in selected:
            started.append(start(peer, log_dir))
        for server in started:
            wait_ready(server)
        yield started
    finally:
        for server in started:
            stop(server)


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
        capture_output=True, text=True, check=True, preexec_fn=_pinned(LOAD_CORE),
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
        capture_output=True, text=True, check=True, preexec_fn=_pinned(LOAD_CORE),
    ).stdout  # fmt: skip
    return json.loads(out)  # type: ignore[no-any-return]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of *pid* and its descendants (gunicorn's worker)."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            total += sum(cpu_seconds(int(child)) for child in children.read().split())
    except (OSError, IndexError, ValueError):
        pass
    return total


# -- SSE ------------------------------------------------------------------------------


def sse_client(*args: str, timeout: float) -> dict[str, Any]:
    out = subprocess.run(
        [PY, str(BENCH / "sse_client.py"), *args],
        capture_output=True, text=True, timeout=timeout, preexec_fn=_pinned(LOAD_CORE), check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"sse_client {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def measure_sse(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    servers = str(BENCH / "servers.py")
    result: dict[str, Any] = {}
    h3 = Peer("h3green-sse", _script(servers, "h3green-sse"))
    with running([h3], log_dir) as (server,):
        result["h3green"] = sse_client(
            "streams", str(server.port), str(server.proc.pid), "--levels", args.sse_levels,
            "--publishes", str(args.publishes), timeout=600,
        )["levels"]  # fmt: skip
    with running([h3], log_dir) as (server,):
        runs = [
            sse_client("firehose", str(server.port), "--events", str(args.events), timeout=120)
            for _ in range(args.runs)
        ]
        result["throughput"] = {
            "runs": [r["events_per_s"] for r in runs],
            "events_per_s": statistics.median(r["events_per_s"] for r in runs),
            "events": args.events,
        }
    if not args.skip_pywsgi_sse:
        pw = Peer("pywsgi-sse", _script(servers, "pywsgi-sse"))
        with running([pw], log_dir) as (server,):
            result["pywsgi"] = sse_client(
                "streams", str(server.port), str(server.proc.pid), "--levels", args.sse_levels,
                "--no-publish", timeout=600,
            )["levels"]  # fmt: skip
    return result


# -- report ---------------------------------------------------------------------------


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
        "versions": {d: _version(d) for d in ("h3green", "gevent", "greenlet", "h11", "gunicorn", "flask")},
        "load_before": os.getloadavg(),
    }


def targets(http: dict[str, Any], sse: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def ratio(workload: str, peer: str, goal: float) -> None:
        ours = http.get(H3, {}).get(workload)
        theirs = http.get(peer, {}).get(workload)
        if ours and theirs:
            value = ours["rps"] / theirs["rps"]
            rows.append({"target": f"{workload}: h3green / {peer}", "measured": f"{value:.2f}x",
                         "goal": f">= {goal}x", "pass": value >= goal})  # fmt: skip

    ratio("hello", "bare h11", 0.9)
    ratio("hello", "pywsgi", 1.6)
    ratio("hello", "gunicorn+flask", 3.0)
    if sse:
        top = sse["h3green"][-1]
        n = top["streams"]
        rows.append({"target": f"SSE RSS per idle stream at {n} streams", "measured": f"{top['kib_per_stream']:.1f} KiB",
                     "goal": "<= 16 KiB", "pass": top["kib_per_stream"] <= 16})  # fmt: skip
        if "fanout_median_ms" in top:
            rows.append({"target": f"fan-out to {n} streams (median)", "measured": f"{top['fanout_median_ms']:.0f} ms",
                         "goal": "<= 300 ms", "pass": top["fanout_median_ms"] <= 300})  # fmt: skip
        eps = sse["throughput"]["events_per_s"]
        rows.append({"target": "events/s on one stream", "measured": f"{eps:,.0f}",
                     "goal": ">= 30,000", "pass": eps >= 30000})  # fmt: skip
    return rows


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    v = m["versions"]
    lines = [
        f"### h3green benchmark, {m['date']}",
        "",
        f"- machine: {m['system']}, {m['cpu']}, {m['cores']} cores; server pinned to core "
        f"{report['server_core']}, load generator to core {report['load_core']}",
        f"- Python {m['python']}; h3green {v['h3green']}, gevent {v['gevent']}, greenlet {v['greenlet']}, "
        f"h11 {v['h11']}, gunicorn {v['gunicorn']}, Flask {v['flask']}",
        f"- load: {report['loadgen']}, {report['connections']} keep-alive connections, "
        f"{report['duration']} s per measurement, median of {report['runs']} interleaved runs",
        f"- load average before {m['load_before'][0]:.2f}, after {report['load_after'][0]:.2f} "
        "(other work on the machine moves absolute numbers; compare ratios)",
    ]
    lines += [f"- note: {note}" for note in report["notes"]]
    http = report["http"]
    if http:
        lines += ["", "| server | hello req/s | p50 / p99 ms | CPU µs/req | json-params req/s | p50 / p99 ms "
                  "| CPU µs/req | what |", "|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for name, row in http.items():
            cells = []
            for workload in WORKLOADS:
                r = row.get(workload)
                cells += (
                    [f"{r['rps']:,.0f}", f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}", f"{r['cpu_us']:.0f}"]
                    if r
                    else ["-", "-", "-"]
                )
            lines.append(f"| {name} | {' | '.join(cells)} | {row['note']} |")
        ours = http.get(H3)
        if ours:
            lines += ["", "| h3green ÷ peer | hello | json-params |", "|---|---:|---:|"]
            for name, row in http.items():
                if name == H3:
                    continue
                cells = [
                    f"{ours[w]['rps'] / row[w]['rps']:.2f}x" if w in ours and w in row else "-"
                    for w in WORKLOADS
                ]
                lines.append(f"| {name} | {' | '.join(cells)} |")
    sse = report["sse"]
    if sse:
        pywsgi = {e["streams"]: e for e in sse.get("pywsgi", [])}
        lines += ["", "| idle SSE streams | h3green RSS / stream | pywsgi RSS / stream | fan-out (median of "
                  f"{report['publishes']}) |", "|---:|---:|---:|---:|"]  # fmt: skip
        for e in sse["h3green"]:
            pw = pywsgi.get(e["streams"])
            pw_cell = f"{pw['kib_per_stream']:.1f} KiB" if pw else "-"
            lines.append(
                f"| {e['streams']:,} | {e['kib_per_stream']:.1f} KiB | {pw_cell} | {e.get('fanout_median_ms', 0):.0f} ms |"
            )
        t = sse["throughput"]
        lines += ["", f"SSE throughput, one stream: {t['events_per_s']:,.0f} events/s "
                  f"(median of {len(t['runs'])} runs of {t['events']:,} events)"]  # fmt: skip
    if report["targets"]:
        lines += ["", "| target | measured | goal | |", "|---|---:|---:|---|"]
        for row in report["targets"]:
            lines.append(
                f"| {row['target']} | {row['measured']} | {row['goal']} | {'pass' if row['pass'] else 'MISS'} |"
            )
    return "\n".join(lines)


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
    parser.add_argument("--skip-pywsgi-sse", action="store_true")
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "latest.json")
    args = parser.parse_args(argv)
    args.json = args.json.resolve()  # the servers run in bench/, the log paths must not move
    if args.quick:
        args.runs, args.duration, args.sse_levels = 1, 0.3, "20,50"
        args.publishes, args.events = 1, 2000
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
        report["sse"] = measure_sse(args, log_dir)
    report["load_after"] = os.getloadavg()
    report["server_pids"] = STARTED_PIDS
    report["targets"] = targets(report["http"], report["sse"])
    scratch.cleanup()
    args.json.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
