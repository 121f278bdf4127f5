"""The benchmark's server processes: how each peer starts, is pinned, waited on and stopped.

Every server is its own process in its own session, pinned to the server core; the load
generators are pinned to the other core. ``STARTED_PIDS`` lists every process started,
so a test can check that none outlives a run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
PY = sys.executable


@dataclass
class Peer:
    name: str
    command: Callable[[int], list[str]]
    note: str = ""
    #: Directories put first on the server's PYTHONPATH (an older h3green, for --compare-ref).
    path: list[str] = field(default_factory=list)
    #: Extra environment for the server (the SSE peers' ping interval).
    env: dict[str, str] = field(default_factory=dict)
    #: The process whose RSS and CPU count is the arbiter's only child (gunicorn).
    forks_worker: bool = False
    #: Pinned to the server core; the scale run lets its workers spread over every core.
    pin: bool = True


def script_cmd(*args: str) -> Callable[[int], list[str]]:
    return lambda port: [PY, *args, str(port)]


def gunicorn_cmd(worker: str, app: str, *extra: str) -> Callable[[int], list[str]]:
    return lambda port: [
        PY, "-m", "gunicorn", "-k", worker, "-w", "1", "--chdir", str(BENCH),
        "-b", f"127.0.0.1:{port}", "--log-level", "warning", *extra, app,
    ]  # fmt: skip


def uvicorn_cmd(app: str) -> Callable[[int], list[str]]:
    # "auto" picks uvloop and httptools when they are installed, as uvicorn[standard] does.
    return lambda port: [
        PY, "-m", "uvicorn", "--app-dir", str(BENCH), "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log", "--lifespan", "off", "--loop", "auto",
        "--http", "auto", "--backlog", "2048", app,
    ]  # fmt: skip


def missing_modules(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def uvicorn_flavour() -> str:
    """What uvicorn's "auto" picks here, for the table's notes."""
    loop = "uvloop" if not missing_modules("uvloop") else "asyncio"
    http = "httptools" if not missing_modules("httptools") else "h11"
    return f"{loop} + {http}"


def _cores() -> tuple[set[int] | None, set[int] | None]:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return {cores[0]}, {cores[1]}


SERVER_CORE, LOAD_CORE = _cores()


def pinned(cores: set[int] | None) -> Callable[[], None] | None:
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
    env.update(peer.env)
    # The runner starts no threads, so preexec_fn (pinning the child to its core) is safe.
    proc = subprocess.Popen(
        peer.command(port), cwd=BENCH, stdout=log, stderr=subprocess.STDOUT, env=env,
        preexec_fn=pinned(SERVER_CORE) if peer.pin else None, start_new_session=True,  # noqa: PLW1509
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
            # The whole session: a gunicorn arbiter killed outright would orphan its worker.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
    server.log.close()


def worker_pids(server: Running) -> list[int]:
    with open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children") as children:
        return [int(pid) for pid in children.read().split()]


def measured_pid(server: Running, timeout: float = 10.0) -> int:
    """The pid whose RSS is the server's: gunicorn's worker, else the process itself."""
    if not server.peer.forks_worker:
        return server.proc.pid
    deadline = time.monotonic() + timeout
    while True:
        with open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children") as children:
            pids = children.read().split()
        if pids:
            STARTED_PIDS.append(int(pids[0]))  # checked too: a worker must not outlive its arbiter
            return int(pids[0])
        if time.monotonic() > deadline:
            raise TimeoutError(f"{server.peer.name}: no worker process after {timeout} s")
        time.sleep(0.1)


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


def cpu_seconds(pid: int) -> float:
    """CPU time of *pid* (every thread) and its descendants (gunicorn's worker), 0 if gone.

    From ``/proc/PID/task/*/schedstat``, in nanoseconds: ``/proc/PID/stat`` counts clock
    ticks (10 ms), too coarse for a short window. A thread that exits within the window
    is not counted; none of the servers measured here runs threads that come and go.
    """
    total = 0.0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0]) / 1e9
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            total += sum(cpu_seconds(int(child)) for child in children.read().split())
    except (OSError, IndexError, ValueError):
        pass
    return total
