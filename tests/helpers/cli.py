"""The one launcher of ``python -m h3green`` in a process of its own."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import gevent
from gevent import subprocess as gsubprocess

__all__ = ["REPO", "TESTS", "start_cli"]

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def start_cli(
    app: str,
    *flags: str,
    cwd: str | Path = TESTS,
    env: dict[str, str] | None = None,
    access_log: bool = False,
    timeout: float = 20.0,
    seen: list[str] | None = None,
) -> tuple[gsubprocess.Popen[str], int]:
    """``python -m h3green APP --port 0 FLAGS`` in *cwd*, and the port it reports.

    Its output (stdout and stderr, as text) stays readable on ``proc.stdout`` after the
    "listening" line. A gevent subprocess, so waiting for it never blocks a server
    running in this process. The lines read up to it are appended to *seen*. The
    caller ends it (``proc.kill(); proc.wait()``, or a signal and ``communicate``).
    """
    argv = [sys.executable, "-m", "h3green", app, "--port", "0", *flags]
    if not access_log:
        argv.append("--no-access-log")
    proc = gsubprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        stdout=gsubprocess.PIPE,
        stderr=gsubprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = [] if seen is None else seen
    with gevent.Timeout(timeout, AssertionError(f"{app} did not start in {timeout} s: {seen}")):
        while line := proc.stdout.readline():
            seen.append(line)
            if found := _LISTENING.search(line):
                return proc, int(found.group(1))
    proc.kill()
    rest = proc.communicate()[0]
    raise AssertionError(f"{app} exited before listening:\n{''.join(seen)}{rest}")
