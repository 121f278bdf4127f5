"""The benchmark runner's smoke mode, so ``bench/run.py`` cannot rot unnoticed.

Numbers are not checked (a shared machine is too noisy for that); what is checked is that
every server starts and answers both workloads through the bundled load generator, the SSE
figures come back, the table and the targets are printed, the JSON is written, and no
server process outlives the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.live


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
        stdout, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the runner stop the servers it started before it exits.
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
        pytest.fail(f"bench/run.py --quick did not finish in 90 s:\n{stderr[-3000:]}")
    return proc.returncode, stdout, stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_quick_run_measures_every_server_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    code, stdout, stderr = _run_quick(out)
    assert code == 0, stderr[-3000:]
    report = json.loads(out.read_text())

    http = report["http"]
    expected = {"h3green", "h3green+log", "bare h11", "pywsgi", "gunicorn+flask"}
    assert expected <= set(http)
    for name, row in http.items():
        for workload in ("hello", "json-params"):
            assert row[workload]["rps"] > 0, (name, workload)
            assert row[workload]["errors"] == 0, (name, workload)
            assert f"| {name} |" in stdout

    sse = report["sse"]
    assert [level["streams"] for level in sse["h3green"]] == [20, 50]
    assert all(level["kib_per_stream"] > 0 and level["fanout_median_ms"] > 0 for level in sse["h3green"])
    assert [level["streams"] for level in sse["pywsgi"]] == [20, 50]
    assert sse["throughput"]["events_per_s"] > 0

    assert "bench/loadgen.py" in report["loadgen"]
    assert "load average" in stdout
    targets = {row["target"] for row in report["targets"]}
    assert "hello: h3green / bare h11" in targets
    assert "events/s on one stream" in targets
    assert stdout.count("| pass |") + stdout.count("| MISS |") == len(report["targets"])
    # Every server the runner started was stopped before it returned.
    assert len(report["server_pids"]) >= len(expected) + 2  # the HTTP peers and the SSE servers
    assert [pid for pid in report["server_pids"] if _alive(pid)] == []
