"""A real ``redis-server`` per test, on an ephemeral port, and helpers for channel tests.

Strategy: Debian's ``redis-server`` (``.ci/run`` installs it) runs as a child of the test
with persistence off, bound to 127.0.0.1 on a port that was free a moment ago (``--port
0`` would disable TCP altogether). ``start`` waits for ``PING``; ``kill`` is SIGKILL, as a
crash would be; the fixture stops it whatever happens. redis-py in this (unpatched) test
process is made cooperative by giving its connection module gevent's socket module,
which is what monkey patching does in a server process.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import gevent
from gevent import socket as gsocket
from helpers import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    def __init__(self, directory: Path, *options: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.options = options
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        command = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            # Small stream nodes, so approximate trimming (MAXLEN ~) shows in short tests.
            "--stream-node-max-entries", "4",
            *self.options,
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}: {command}")
            try:
                with gsocket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return self
            except OSError:
                pass
            gevent.sleep(0.01)
        raise AssertionError("redis-server did not answer PING within 10 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)
        self.proc = None


def blocks(data: bytes) -> list[dict[str, str]]:
    """The events in an SSE byte stream, each as its fields (``data`` lines joined)."""
    events = []
    for block in data.decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = fields[name] + "\n" + value if name in fields else value
        if fields:
            events.append(fields)
    return events
