"""``bench/redis_fanout.py --quick``: both servers start, every figure comes back, the
table is printed, the JSON is written and no process outlives the run. Numbers are not
checked (a shared machine is too noisy for that)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO
from redis_helpers import REDIS_SERVER

pytestmark = pytest.mark.live


def test_redis_fanout_quick(tmp_path: Path) -> None:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed")
    out = tmp_path / "fanout.json"
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(Path(REPO) / "bench" / "redis_fanout.py"), "--quick", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "| memory, 1 worker |" in done.stdout and "| redis, 4 workers |" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [row["server"] for row in rows] == ["memory, 1 worker", "redis, 4 workers"]
    for row in rows:
        assert row["fanout_median_ms"] > 0 and row["publish_per_s"] > 0 and row["delivered_per_s"] > 0
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout == ""
