"""The SSE half of the benchmark: h3green and the servers its users would pick instead.

h3green runs with a heartbeat as long as the peers' ping (what each does by default:
15 s), and again with it off. Peers (each with the broadcast its users write: one queue per subscriber, a ``/publish``
endpoint, ``/`` reporting listeners; see ``bench/sse_gevent.py`` and ``bench/sse_asgi.py``):
gevent.pywsgi and gunicorn -k gevent + Flask generators, sse-starlette on uvicorn, and
FastAPI's own SSE on uvicorn. Each runs in one process (gunicorn: one worker, whose RSS is
read) and gets, in that process:

1. idle streams at each level (1k/5k/10k): server RSS per stream and the time from one
   ``/publish`` to the last stream reading the event (``sse_client.py streams``);
2. disconnect detection: streams closed by the client, the delay until the server's
   generator or callback ran its ``finally`` (``sse_client.py detect``);
3. events per second on one stream, ``/firehose`` (``sse_client.py firehose``).

Then h3green alone: heartbeat CPU, N idle streams with a short per-stream heartbeat, server
CPU seconds over a window ÷ heartbeats that arrived (``sse_client.py heartbeat``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from procs import (
    BENCH,
    LOAD_CORE,
    PY,
    Peer,
    gunicorn_cmd,
    measured_pid,
    missing_modules,
    pinned,
    running,
    script_cmd,
    uvicorn_cmd,
)

H3 = "h3green"


def sse_peers(ping: float) -> tuple[list[Peer], list[str]]:
    servers = str(BENCH / "servers.py")
    env = {"H3GREEN_BENCH_PING": str(ping)}
    found = [
        Peer(
            H3, script_cmd(servers, "h3green-sse"), f"h3green Channel.listen, heartbeat {ping:g} s", env=env
        ),
        Peer(
            "h3green/no-heartbeat",
            script_cmd(servers, "h3green-sse"),
            "the same with the heartbeat off",
            env={"H3GREEN_BENCH_PING": "0"},
        ),
        Peer(
            "pywsgi",
            script_cmd(str(BENCH / "sse_gevent.py")),
            "gevent.pywsgi generator, stock (Nagle on)",
            env=env,
        ),
        Peer(
            "gunicorn+flask",
            gunicorn_cmd("gevent", "sse_gevent:flask_app", "--worker-connections", "20000"),
            "gunicorn -k gevent, Flask generator, 1 worker",
            env=env,
            forks_worker=True,
        ),
        Peer("sse-starlette", uvicorn_cmd("sse_asgi:starlette_app"), "sse-starlette on uvicorn", env=env),
        Peer("fastapi", uvicorn_cmd("sse_asgi:fastapi_app"), "FastAPI SSE on uvicorn", env=env),
    ]
    needs = {
        "gunicorn+flask": ("gunicorn", "flask"),
        "sse-starlette": ("uvicorn", "sse_starlette"),
        "fastapi": ("uvicorn", "fastapi"),
    }
    notes = []
    for name, modules in needs.items():
        if absent := missing_modules(*modules):
            found = [p for p in found if p.name != name]
            notes.append(
                f"SSE {name} skipped: {', '.join(absent)} not installed (pip install h3green[bench])"
            )
    if not missing_modules("fastapi"):
        from sse_asgi import FASTAPI_SSE

        for peer in found:
            if peer.name == "fastapi":
                peer.note = f"FastAPI on uvicorn, {FASTAPI_SSE}"
    return found, notes


def sse_client(*args: str, timeout: float) -> dict[str, Any]:
    out = subprocess.run(
        [PY, str(BENCH / "sse_client.py"), *args],
        capture_output=True, text=True, timeout=timeout, preexec_fn=pinned(LOAD_CORE), check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"sse_client {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _wait_no_listeners(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            if json.loads(response.read())["listeners"] == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError("streams still subscribed after the client closed them")
        time.sleep(0.1)


def measure_peer(peer: Peer, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    with running([peer], log_dir) as (server,):
        port = str(server.port)
        levels = sse_client(
            "streams", port, str(measured_pid(server)), "--levels", args.sse_levels,
            "--publishes", str(args.publishes), timeout=900,
        )["levels"]  # fmt: skip
        _wait_no_listeners(server.port)
        # Up to two ping intervals for servers that learn of a departure by a failed write.
        limit = 2.5 * args.ping + 10
        detect = sse_client(
            "detect", port, "--samples", str(args.detect_samples), "--spread", str(args.ping),
            "--timeout", str(limit), timeout=limit + 60,
        )  # fmt: skip
        runs = [
            sse_client("firehose", port, "--events", str(args.events), timeout=300)["events_per_s"]
            for _ in range(args.runs)
        ]
    return {
        "note": peer.note,
        "levels": levels,
        "detect": detect,
        "throughput": {"runs": runs, "events_per_s": statistics.median(runs), "events": args.events},
    }


def measure_heartbeat(
    args: argparse.Namespace, log_dir: Path, path: list[str] | None = None
) -> dict[str, Any]:
    peer = Peer("h3green-heartbeat", script_cmd(str(BENCH / "servers.py"), "h3green-sse"), path=path or [])
    with running([peer], log_dir) as (server,):
        return sse_client(
            "heartbeat", str(server.port), str(server.proc.pid), "--streams", str(args.hb_streams),
            "--interval", str(args.hb_interval), "--window", str(args.hb_window), timeout=900,
        )  # fmt: skip


_FAILURES = (RuntimeError, TimeoutError, OSError, subprocess.TimeoutExpired, KeyError, ValueError)


def measure_sse(
    args: argparse.Namespace, log_dir: Path, notes: list[str], ref_dir: Path | None = None
) -> dict[str, Any]:
    """Every SSE figure for every peer; a peer that fails is noted and the run goes on."""
    selected, skipped = sse_peers(args.ping)
    notes.extend(skipped)
    if ref_dir is not None:  # --compare-ref: h3green as of REF beside the working tree
        ours = selected[0]
        selected.insert(1, Peer(f"h3green@{args.compare_ref}", ours.command, f"h3green as of {args.compare_ref}",
                                path=[str(ref_dir)], env=ours.env))  # fmt: skip
    if args.sse_only:
        wanted = set(args.sse_only.split(","))
        selected = [p for p in selected if p.name in wanted]
    result: dict[str, Any] = {"ping_s": args.ping, "publishes": args.publishes, "peers": {}}
    for peer in selected:
        try:
            result["peers"][peer.name] = measure_peer(peer, args, log_dir)
        except _FAILURES as exc:
            notes.append(f"SSE {peer.name} failed: {type(exc).__name__}: {str(exc)[-300:]}")
    if not args.sse_only or H3 in args.sse_only.split(","):
        try:
            result["heartbeat"] = measure_heartbeat(args, log_dir)
            if ref_dir is not None:
                result["heartbeat_ref"] = measure_heartbeat(args, log_dir, [str(ref_dir)])
        except _FAILURES as exc:
            notes.append(f"SSE heartbeat failed: {type(exc).__name__}: {str(exc)[-300:]}")
    return result
