"""The scale run in small: hundreds of idle SSE streams on one process and on gunicorn -w 2.

``bench/scale.py`` at a few hundred streams, so the scenario of the 50,000-stream run
cannot rot: streams from several client processes bound to different 127.0.0.x source
addresses, every stream heartbeating (here: none silent for five heartbeats), one publish
through each worker's in-process channel reaching every stream that worker holds, RSS
read at each step, and no process left behind.
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
# Seconds each (a build, a benchmark run): deselect with -m "not slow" for a quick loop.
pytestmark = [pytest.mark.live, pytest.mark.slow]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_small_scale_run_holds_every_stream(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "scale.py"), "--single", "200", "--multi", "300",
         "--workers", "2", "--per-client", "120", "--heartbeat", "0.5", "--watch", "3",
         "--late-after", "2.5", "--steps", "2", "--json", str(out), "--markdown", str(tmp_path / "scale.md")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=100)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the script stops its server and clients
        stdout, stderr = proc.communicate(timeout=30)
        pytest.fail(f"bench/scale.py did not finish in 100 s:\n{stderr[-3000:]}")
    assert proc.returncode == 0, stdout + stderr[-3000:]
    report = json.loads(out.read_text())

    single, multi = report["scenarios"]
    assert (single["streams"], single["workers"], single["clients"]) == (200, 1, 2)
    assert (multi["streams"], multi["workers"], multi["clients"]) == (300, 2, 3)
    for scenario in (single, multi):
        assert scenario["ok"], scenario
        steps = scenario["steps"]
        assert [s["streams"] for s in steps] == [scenario["streams"] // 2, scenario["streams"]]
        assert steps[-1]["rss_kib"] > scenario["baseline_kib"]
        heartbeat = scenario["heartbeat"]
        assert heartbeat["late_streams"] == 0
        # Every stream heartbeat at least once in the window (3 s, heartbeat 0.5 s).
        assert heartbeat["beats"] >= scenario["streams"]
        publishes = scenario["publishes"]
        assert len(publishes) == scenario["workers"]  # one publish through each worker's channel
        assert len({p["pid"] for p in publishes}) == scenario["workers"]
        assert sum(p["listeners"] for p in publishes) == scenario["streams"]
        assert all(p["missing"] == 0 for p in publishes)
    assert "| one process | 200 |" in stdout and "| gunicorn -k H3Worker -w 2 | 300 |" in stdout
    assert [pid for pid in report["pids"] if _alive(pid)] == []
