"""The scale run: tens of thousands of idle SSE streams on h3green, checked stream by stream.

    python bench/scale.py                       # 19,000 streams on one process, then
                                                # 50,000 on gunicorn -k H3Worker -w 4
    python bench/scale.py --single 300 --multi 400 --workers 2 --heartbeat 1 --steps 2

Two scenarios, each against a fresh server:

* **single**: one ``h3green.Server`` process (``servers.py h3green-sse``) holding
  ``--single`` streams (19,000: the per-process descriptor limit here is 20,000, hard);
* **multi**: ``gunicorn -k h3green.workers.H3Worker -w --workers`` holding ``--multi``
  streams in total (50,000 over 4 workers).

Strategy: the streams come from several client processes (``bench/scale_client.py``, at
most ``--per-client`` streams each, under the same descriptor limit), each bound to its
own source address ``127.0.0.2``, ``127.0.0.3``... so no address runs out of ephemeral
ports. Every stream asks for a heartbeat of ``--heartbeat`` seconds (h3green's per-stream
``start_sse(heartbeat=...)``) and the head names the worker that serves it
(``x-worker``). The streams open in ``--steps`` equal steps; after each, the run waits
until every worker reports as many channel listeners as the clients hold streams on it,
then reads each worker's RSS once it settles: RSS against streams should be a straight
line (least-squares slope and r² reported). With every stream open:

1. *heartbeats on time*: every client reads for ``--watch`` seconds (two heartbeats and a
   second by default) and counts, per stream, the longest silence; a stream silent for
   more than ``--late-after`` seconds (``heartbeat * 1.2 + 1``) is late. Server CPU over the same window ÷
   heartbeats received gives the CPU per heartbeat at that scale;
2. *publish through each worker's channel*: for each worker in turn, one ``/publish?only=PID``
   (answered by that worker alone) must reach every stream that worker holds; the time
   from the publish call to the last of them reading it is reported.

gunicorn's workers share one listening socket and take connections unevenly (one of four
took 35% of 6,000 streams in a trial), and a worker at its descriptor limit could not
answer the run's own requests. So each client holds at most ``--balance`` (1.25) times
its even share on any one worker, reconnecting a stream that lands beyond that, as an
``EventSource`` would after a refusal; a 503 from a full worker is retried the same way.
Both counts are reported.

Results go to ``--json`` and a markdown summary to ``--markdown`` and stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from procs import BENCH, PY, STARTED_PIDS, Peer, Running, cpu_seconds, running, script_cmd, worker_pids
from sse_client import settled_rss_kib
from sse_h3green import MAX_CONNECTIONS


def _get_json(port: int, path: str, attempts: int = 50) -> dict[str, Any]:
    """GET a JSON answer; a 503 (the worker that took the connection is full) is retried."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
                return json.loads(response.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code != 503 or attempt == attempts - 1:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


class Clients:
    """The client processes, driven in lockstep: one command to each, then every answer."""

    def __init__(self, port: int, path: str, count: int) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        for i in range(count):
            proc = subprocess.Popen(
                [PY, str(BENCH / "scale_client.py"), str(port), f"127.0.0.{2 + i}", path],
                cwd=BENCH, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            STARTED_PIDS.append(proc.pid)
            self.procs.append(proc)

    def send(self, commands: list[dict[str, Any]]) -> None:
        for proc, command in zip(self.procs, commands, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()

    def answers(self) -> list[dict[str, Any]]:
        out = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"scale client {proc.pid} exited with {proc.wait()}")
            out.append(json.loads(line))
        return out

    def ask(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        self.send([command] * len(self.procs))
        return self.answers()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.write('{"cmd": "close"}\n')
                    proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


@contextlib.contextmanager
def clients(port: int, path: str, count: int) -> Iterator[Clients]:
    group = Clients(port, path, count)
    try:
        yield group
    finally:
        group.close()


def _pids(server: Running, workers: int) -> list[int]:
    if not workers:
        return [server.proc.pid]
    deadline = time.monotonic() + 30
    while len(pids := worker_pids(server)) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pids)} of {workers} gunicorn workers started")
        time.sleep(0.1)
    STARTED_PIDS.extend(pids)  # reported: none may outlive its arbiter
    return pids


def _wait_subscribed(port: int, expected: dict[str, int], timeout: float) -> None:
    """Until every worker reports as many listeners as the clients hold streams on it."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while any(seen.get(pid) != n for pid, n in expected.items()):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"listeners {seen}, expected {expected} (a worker at its connection limit cannot answer)"
            )
        answer = _get_json(port, "/")
        seen[str(answer["pid"])] = answer["listeners"]
        time.sleep(0.01)


def _fit(points: list[tuple[int, float]]) -> dict[str, float]:
    """Least-squares line through (streams, RSS KiB): slope in KiB per stream, and r²."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    syy = sum((y - my) ** 2 for _, y in points)
    slope = sxy / sxx if sxx else 0.0
    r2 = (sxy * sxy) / (sxx * syy) if sxx and syy else 1.0
    return {"kib_per_stream": slope, "r2": r2}


def scenario(
    name: str, peer: Peer, total: int, *, workers: int, args: argparse.Namespace, log_dir: Path
) -> dict[str, Any]:
    late_after = args.late_after
    n_clients = max(1, math.ceil(total / args.per_client))
    shares = [total // n_clients + (1 if i < total % n_clients else 0) for i in range(n_clients)]
    print(f"{name}: {total:,} streams, {n_clients} client processes", file=sys.stderr, flush=True)
    with running([peer], log_dir) as (server,):
        pids = _pids(server, workers)
        for _ in range(3 * len(pids)):
            _get_json(server.port, "/")  # lazily built state is not charged to the streams
        time.sleep(0.5)
        baseline = {pid: settled_rss_kib(pid, time.monotonic() + 5) for pid in pids}
        steps: list[dict[str, Any]] = []
        with clients(server.port, f"/stream?heartbeat={args.heartbeat:g}", n_clients) as group:
            counts: dict[str, int] = {}
            for k in range(1, args.steps + 1):
                started = time.monotonic()
                group.send([
                    {"cmd": "grow", "count": share * k // args.steps, "timeout": 600,
                     "max_per_worker": math.ceil(share * args.balance / workers) + 1 if workers > 1 else None}
                    for share in shares
                ])  # fmt: skip
                counts = {}
                refused = rebalanced = 0
                for answer in group.answers():
                    refused += answer["refused"]
                    rebalanced += answer["rebalanced"]
                    for pid, n in answer["workers"].items():
                        counts[pid] = counts.get(pid, 0) + n
                opened = time.monotonic() - started
                _wait_subscribed(server.port, counts, timeout=120)
                rss = {pid: settled_rss_kib(pid, time.monotonic() + 10) for pid in pids}
                streams = sum(counts.values())
                steps.append({
                    "streams": streams,
                    "open_s": opened,
                    "refused": refused,  # 503s from a full worker, retried (cumulative)
                    "rebalanced": rebalanced,  # reconnected: over --balance on one worker
                    "rss_kib": sum(rss.values()),
                    "kib_per_stream": (sum(rss.values()) - sum(baseline.values())) / max(1, streams),
                    "per_worker": {str(pid): {"streams": counts.get(str(pid), 0), "rss_kib": rss[pid]} for pid in pids},
                })  # fmt: skip
                print(
                    f"  {streams:,} streams, RSS {sum(rss.values()) / 1024:,.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
            cpu = sum(cpu_seconds(pid) for pid in pids)
            watched = group.ask({"cmd": "watch", "seconds": args.watch, "late_after": late_after})
            cpu = sum(cpu_seconds(pid) for pid in pids) - cpu
            beats = sum(w["beats"] for w in watched)
            heartbeat = {
                "interval_s": args.heartbeat,
                "window_s": max(w["seconds"] for w in watched),
                "late_after_s": late_after,
                "beats": beats,
                "expected_beats": round(total * args.watch / args.heartbeat) if args.heartbeat > 0 else 0,
                "late_streams": sum(w["late"] for w in watched),
                "longest_silence_s": max(w["longest_silence_s"] for w in watched),
                "silence_p99_s": max(w["silence_p99_s"] for w in watched),
                "server_cpu_s": cpu,
                "us_per_beat": cpu / max(1, beats) * 1e6,
            }
            publishes = []
            for pid in pids:
                group.send([{"cmd": "await", "worker": str(pid), "want": 1, "timeout": 60}] * n_clients)
                while not (answer := _get_json(server.port, f"/publish?only={pid}")).get("t0"):
                    pass  # another worker took the connection and declined
                reached = group.answers()
                publishes.append({
                    "pid": pid,
                    "listeners": answer["listeners"],
                    "missing": sum(r["missing"] for r in reached),
                    "fanout_ms": (max(r["last"] for r in reached) - answer["t0"]) * 1000,
                })  # fmt: skip
    points = [(0, float(sum(baseline.values())))] + [(s["streams"], float(s["rss_kib"])) for s in steps]
    return {
        "scenario": name,
        "streams": total,
        "workers": workers or 1,
        "clients": n_clients,
        "baseline_kib": sum(baseline.values()),
        "steps": steps,
        "fit": _fit(points),
        "heartbeat": heartbeat,
        "publishes": publishes,
        "ok": heartbeat["late_streams"] == 0
        and all(p["missing"] == 0 for p in publishes)
        and sum(s for s in counts.values()) == total,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"### h3green scale run, {report['date']}",
        "",
        f"- machine: {report['system']}, {report['cores']} cores, descriptor limit {report['fd_limit']:,} per process",
        f"- heartbeat {report['heartbeat_s']:g} s per stream; clients: separate processes of at most "
        f"{report['per_client']:,} streams, each bound to its own 127.0.0.x",
        "",
        "| scenario | streams | RSS | KiB / stream (fit, r²) | heartbeats: late streams / longest silence | "
        "CPU / heartbeat | publish → last stream, per worker | |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in report["scenarios"]:
        hb = r["heartbeat"]
        fan = ", ".join(
            f"{p['fanout_ms']:,.0f} ms ({p['listeners']:,}"
            + (f", {p['missing']} missed)" if p["missing"] else ")")
            for p in r["publishes"]
        )
        lines.append(
            f"| {r['scenario']} | {r['streams']:,} | {r['steps'][-1]['rss_kib'] / 1024:,.0f} MiB | "
            f"{r['fit']['kib_per_stream']:.1f} ({r['fit']['r2']:.4f}) | {hb['late_streams']} / "
            f"{hb['longest_silence_s']:.2f} s | {hb['us_per_beat']:.0f} µs | {fan} | {'ok' if r['ok'] else 'FAIL'} |"
        )
    for r in report["scenarios"]:
        lines += ["", f"{r['scenario']}, RSS at each step (baseline {r['baseline_kib'] / 1024:,.1f} MiB):", "",
                  "| streams | RSS | KiB / stream over baseline | streams per worker | opened in | 503s / rebalanced |",
                  "|---:|---:|---:|---|---:|---:|"]  # fmt: skip
        for s in r["steps"]:
            per = " / ".join(f"{w['streams']:,}" for w in s["per_worker"].values())
            lines.append(f"| {s['streams']:,} | {s['rss_kib'] / 1024:,.1f} MiB | {s['kib_per_stream']:.1f} | {per} "
                         f"| {s['open_s']:.1f} s | {s['refused']:,} / {s['rebalanced']:,} |")  # fmt: skip
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=19000, help="streams on one process (0: skip)")
    parser.add_argument("--multi", type=int, default=50000, help="streams over gunicorn workers (0: skip)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker-connections", type=int, help="per gunicorn worker (default 19,500)")
    parser.add_argument("--balance", type=float, default=1.25,
                        help="a client holds at most this times its even share on one worker")  # fmt: skip
    parser.add_argument("--per-client", type=int, default=10000, help="streams per client process")
    parser.add_argument("--heartbeat", type=float, default=15.0, help="seconds, per stream")
    parser.add_argument(
        "--watch", type=float, help="seconds of heartbeat watching (default 2 heartbeats + 1)"
    )
    parser.add_argument(
        "--late-after", type=float, help="silence that makes a stream late (default heartbeat * 1.2 + 1)"
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "scale.json")
    parser.add_argument("--markdown", type=Path, default=BENCH / "results" / "scale.md")
    args = parser.parse_args(argv)
    if args.watch is None:
        args.watch = 2 * args.heartbeat + 1
    if args.late_after is None:
        args.late_after = args.heartbeat * 1.2 + 1
    if args.single > MAX_CONNECTIONS:
        parser.error(f"--single above the app's max_connections ({MAX_CONNECTIONS})")
    return args


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through running() and clients()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cores": os.cpu_count(),
        "fd_limit": hard,
        "heartbeat_s": args.heartbeat,
        "per_client": args.per_client,
        "scenarios": [],
    }
    with tempfile.TemporaryDirectory(prefix="h3green-scale-") as scratch:
        log_dir = Path(scratch)
        if args.single:
            peer = Peer("h3green", script_cmd(str(BENCH / "servers.py"), "h3green-sse"), pin=False)
            report["scenarios"].append(
                scenario("one process", peer, args.single, workers=0, args=args, log_dir=log_dir)
            )
        if args.multi:
            per_worker = args.worker_connections or min(MAX_CONNECTIONS, hard - 500)
            command = [
                PY, "-m", "gunicorn", "-k", "h3green.workers.H3Worker", "-w", str(args.workers),
                "--worker-connections", str(per_worker), "--backlog", "2048", "--chdir", str(BENCH),
                "--log-level", "warning",
            ]  # fmt: skip
            peer = Peer(
                f"h3green/gunicorn -w {args.workers}",
                lambda port: [*command, "-b", f"127.0.0.1:{port}", "sse_h3green:app"],
                pin=False,
            )
            name = f"gunicorn -k H3Worker -w {args.workers}"
            report["scenarios"].append(
                scenario(name, peer, args.multi, workers=args.workers, args=args, log_dir=log_dir)
            )
    report["pids"] = STARTED_PIDS
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    text = markdown(report)
    args.markdown.write_text(text + "\n")
    print(text)
    return 0 if all(r["ok"] for r in report["scenarios"]) else 1


if __name__ == "__main__":
    sys.exit(main())
