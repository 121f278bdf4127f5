"""``bench/hot_path.py`` (the hot-path microbenchmark the ``# PERF:`` notes quote) runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_hot_path_measures_both_parsers_and_workloads() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "hot_path.py"), "--requests", "300", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^(httptools|h11) +(hello|json-params) +([\d.]+) µs/request$", result.stdout, re.M)
    assert {(parser, workload) for parser, workload, _ in rows} == {
        (parser, workload) for parser in ("httptools", "h11") for workload in ("hello", "json-params")
    }
    assert all(float(value) > 0 for _, _, value in rows)
