"""bench/proxy_overhead.py in a short run, so it cannot rot unnoticed (numbers unchecked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Seconds each (a build, a benchmark run): deselect with -m "not slow" for a quick loop.
pytestmark = [pytest.mark.live, pytest.mark.slow]


def test_the_proxy_benchmark_runs_and_reports_both_figures() -> None:
    command = [
        sys.executable,
        str(ROOT / "bench" / "proxy_overhead.py"),
        *("--duration", "1", "--connections", "4", "--aborts", "2", "--loadgen"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    throughput, aborts = report["throughput"], report["abort_to_upstream_close"]
    assert throughput["tool"] == "loadgen" and throughput["non_2xx"] == 0
    assert throughput["direct_rps"] > 0 and throughput["proxied_rps"] > 0
    assert aborts["rounds"] == 2 and 0 <= aborts["median_ms"] <= aborts["max_ms"]
