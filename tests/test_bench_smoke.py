"""The benchmark runner's smoke mode, so ``bench/run.py`` cannot rot unnoticed.

Numbers are not checked (a shared machine is too noisy for that); what is checked is that
every server starts and answers both workloads through the bundled load generator, every
SSE peer gives every SSE figure, the table and the targets are printed, the JSON is
written, and no server process outlives the run. Peers whose package is not installed are
skipped by the runner with a note, and so are they here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Seconds each (a build, a benchmark run): deselect with -m "not slow" for a quick loop.
pytestmark = [pytest.mark.live, pytest.mark.slow]


def _run_quick(out: Path) -> tuple[int, str, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--loadgen",
            "builtin",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=110)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the runner stop the servers it started before it exits.
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
        pytest.fail(f"bench/run.py --quick did not finish in 110 s:\n{stderr[-3000:]}")
    return proc.returncode, stdout, stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def test_quick_run_measures_every_server_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    code, stdout, stderr = _run_quick(out)
    assert code == 0, stderr[-3000:]
    report = json.loads(out.read_text())

    http = report["http"]
    expected = {"h3green", "h3green+log", "floor", "bare httptools", "bare h11", "pywsgi", "gunicorn+flask"}
    optional = {
        "uvicorn": ("uvicorn",),
        "uvicorn+starlette": ("uvicorn", "starlette"),
        "uvicorn+fastapi": ("uvicorn", "fastapi"),
    }
    for name, modules in optional.items():
        if _installed(*modules):
            expected.add(name)
        else:
            assert f"{name} skipped" in stdout
    assert expected <= set(http)
    for name, row in http.items():
        for workload in ("hello", "json-params"):
            assert row[workload]["rps"] > 0, (name, workload)
            assert row[workload]["errors"] == 0, (name, workload)
            assert f"| {name} |" in stdout

    sse = report["sse"]
    sse_expected = {"h3green", "h3green/no-heartbeat", "pywsgi", "gunicorn+flask"}
    sse_optional = {"sse-starlette": ("uvicorn", "sse_starlette"), "fastapi": ("uvicorn", "fastapi")}
    sse_expected |= {name for name, modules in sse_optional.items() if _installed(*modules)}
    assert set(sse["peers"]) == sse_expected
    for name, peer in sse["peers"].items():
        assert [level["streams"] for level in peer["levels"]] == [20, 50], name
        assert all(
            level["kib_per_stream"] > 0 and level["fanout_median_ms"] > 0 for level in peer["levels"]
        ), name
        assert peer["throughput"]["events_per_s"] > 0, name
        detect = peer["detect"]
        # Every closed stream was noticed: the WSGI peers through their (short) ping.
        assert detect["undetected"] == 0 and len(detect["detected_ms"]) == detect["samples"] == 2, name
        assert all(ms >= 0 for ms in detect["detected_ms"]), name
    beat = sse["heartbeat"]
    assert beat["streams"] == 50 and beat["beats"] > 0 and beat["us_per_beat"] > 0

    assert "bench/loadgen.py" in report["loadgen"]
    assert "load average" in stdout
    assert "| client departure noticed" in stdout and "heartbeat cost" in stdout
    targets = {row["target"] for row in report["targets"]}
    assert "hello: h3green / bare h11" in targets
    assert "hello: h3green / bare httptools" in targets
    assert "json-params: h3green / h3green+log" in targets
    if "uvicorn+starlette" in http:
        assert "json-params: h3green / uvicorn+starlette" in targets
    assert "events/s on one stream" in targets
    assert "server CPU per heartbeat" in targets
    assert stdout.count("| pass |") + stdout.count("| MISS |") == len(report["targets"])
    # Every server the runner started was stopped before it returned, gunicorn's workers too.
    assert len(report["server_pids"]) >= len(expected) + len(sse_expected) + 1
    assert [pid for pid in report["server_pids"] if _alive(pid)] == []
