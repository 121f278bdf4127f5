"""Real gunicorn processes: ``-k h3green.workers.H3Worker`` and ``-k gevent`` (the WSGI path).

Each test starts ``python -m gunicorn`` on an ephemeral port in its own process group, and
the fixture kills the group whatever happens. Clients are ``helpers.RawClient`` (h11
over gevent sockets), so a hundred of them share this process's loop without monkey patching.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest
from helpers import RawClient, wait_until

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[1]
H3WORKER = "h3green.workers.H3Worker"
BOOT_TIMEOUT = 15.0

SMALL_APP = """
import os
import shutil
import time

from h3green import H3

app = H3()


@app.get("/")
def hello(event):
    return "Hello, World!"


@app.post("/echo")
def echo(event):
    return event.read_body()


@app.get("/wait")
def wait(event):
    event.start_sse()

    def run(writer):
        writer.send_event("open")
        while writer.is_active:
            time.sleep(0.05)

    event.set_stream_callback(run)


@app.get("/ticks")
def ticks(event):
    event.start_sse()

    def mark_closed():
        # Appear whole or not at all: the test polls for the file from another process.
        with open("closed.log", "a") as log:
            log.write("closed\\n")
        shutil.copyfile("closed.log", "closed.tmp")
        os.replace("closed.tmp", "closed.txt")

    def run(writer):
        writer.on_close(mark_closed)
        while True:
            writer.send_event("tick")
            time.sleep(0.05)

    event.set_stream_callback(run)
"""


class Gunicorn:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log_path = log
        self.port = 0

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def wait_for(self, pattern: str, timeout: float = BOOT_TIMEOUT, count: int = 1) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.findall(pattern, self.log)
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                break
            gevent.sleep(0.05)
        raise AssertionError(f"no {pattern!r} x{count} in the gunicorn log:\n{self.log}")

    def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                return code
            gevent.sleep(0.05)
        raise AssertionError(f"gunicorn still running after {timeout} s:\n{self.log}")


StartGunicorn = Callable[..., Gunicorn]


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[StartGunicorn]:
    started: list[Gunicorn] = []
    (tmp_path / "small_app.py").write_text(SMALL_APP)

    def start(
        app: str, worker: str, *args: str, env: dict[str, str] | None = None, wait: bool = True
    ) -> Gunicorn:
        log = tmp_path / f"gunicorn-{len(started)}.log"
        log.touch()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            worker,
            "-b",
            "127.0.0.1:0",
            "--no-control-socket",
            "--error-logfile",
            str(log),
            "--graceful-timeout",
            "20",
            *args,
            app,
        ]
        environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)]), **(env or {})}
        proc = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        server = Gunicorn(proc, log)
        started.append(server)
        if wait:
            server.port = int(server.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)")[0])
            server.wait_for(r"Booting worker with pid")
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            try:
                os.killpg(server.proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # pragma: no cover - exited just now
                pass
        server.proc.wait(10)


# -- clients: h11 over gevent sockets (helpers.RawClient) ------------------------------

#: Generous: a hundred streams and a gunicorn master share two cores.
CLIENT_TIMEOUT = 10.0


def get(
    address: tuple[str, int], target: str = "/", method: str = "GET", body: bytes = b""
) -> tuple[int, bytes]:
    client = RawClient(address, timeout=CLIENT_TIMEOUT)
    try:
        status, _, data = client.fetch(method, target, body)
        return status, data
    finally:
        client.close()


def sse_client(address: tuple[str, int], path: str, until: bytes, gaps: list[float]) -> bytes:
    """Read an event stream until *until* appears; record the longest pause between pieces."""
    client = RawClient(address, timeout=CLIENT_TIMEOUT)
    try:
        response = client.open("GET", path)
        assert response.status_code == 200
        received = b""
        last = time.monotonic()
        longest = 0.0
        for piece in client.pieces():
            now = time.monotonic()
            longest = max(longest, now - last)
            last = now
            received += piece
            if until in received:
                break
        gaps.append(longest)
        return received
    finally:
        client.close()


def timed_get(address: tuple[str, int]) -> tuple[int, bytes, float]:
    started = time.monotonic()
    status, body = get(address)
    return status, body, time.monotonic() - started


# -- load: 100 streams and plain requests, on both workers -------------------------------------


@pytest.mark.parametrize("worker", [H3WORKER, "gevent"])
def test_counter_streams_to_100_clients_with_plain_requests(gunicorn: StartGunicorn, worker: str) -> None:
    server = gunicorn("examples.counter:app", worker, env={"COUNTER_INTERVAL": "0.05"})
    gaps: list[float] = []
    streams = [gevent.spawn(sse_client, server.address, "/events", b"event: done", gaps) for _ in range(100)]
    gevent.sleep(0.2)
    plain: list[gevent.Greenlet] = []
    for _ in range(5):
        plain.extend(gevent.spawn(timed_get, server.address) for _ in range(10))
        gevent.sleep(0.1)
    gevent.joinall(streams + plain, timeout=30, raise_error=True)
    assert all(g.successful() for g in streams + plain)
    for greenlet in streams:
        body = greenlet.value
        assert body.count(b"event: counter") == 30
        assert b"id: 29\ndata: 29\n" in body
    assert all(g.value[0] == 200 and b"EventSource" in g.value[1] for g in plain)
    # Plain requests are answered promptly while the streams run.
    assert max(g.value[2] for g in plain) < 2.0, sorted(g.value[2] for g in plain)[-5:]
    # Events come every 0.05 s; a stall would show as a long pause on some stream.
    assert max(gaps) < 2.0, sorted(gaps)[-5:]


# -- graceful shutdown, reload, restarts ----------------------------------------------------


def test_sigterm_sends_the_final_event_and_exits_early(gunicorn: StartGunicorn) -> None:
    server = gunicorn("examples.counter:app", H3WORKER, env={"COUNTER_INTERVAL": "5"})
    clients = [RawClient(server.address, timeout=CLIENT_TIMEOUT) for _ in range(10)]
    try:
        streams = []
        for client in clients:
            assert client.open("GET", "/events").status_code == 200
            stream = client.pieces()
            assert b"data: 0" in next(stream)
            streams.append(stream)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        for stream in streams:
            rest = b"".join(stream)  # ends at the terminating chunk
            assert b"event: shutdown" in rest
            assert b"server shutting down" in rest
        assert server.wait_exit(10) == 0
        # graceful_timeout is 20 s: the worker left as soon as its streams were closed.
        assert time.monotonic() - started < 5
        assert "sent the shutdown event to 10 stream(s)" in server.log
    finally:
        for client in clients:
            client.close()


def test_sighup_reload_keeps_serving(gunicorn: StartGunicorn) -> None:
    server = gunicorn("small_app:app", H3WORKER)
    assert get(server.address) == (200, b"Hello, World!")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + BOOT_TIMEOUT
    served = 0
    while len(re.findall("Booting worker with pid", server.log)) < 2 and time.monotonic() < deadline:
        assert get(server.address) == (200, b"Hello, World!")
        served += 1
    server.wait_for("Booting worker with pid", count=2)
    for _ in range(5):
        assert get(server.address) == (200, b"Hello, World!")
    assert served > 0
    assert server.proc.poll() is None


def test_max_requests_restarts_the_worker(gunicorn: StartGunicorn) -> None:
    server = gunicorn("small_app:app", H3WORKER, "--max-requests", "3")
    for _ in range(3):
        assert get(server.address)[0] == 200
    server.wait_for("Autorestarting worker")
    server.wait_for("Booting worker with pid", count=2)
    for _ in range(2):
        assert get(server.address)[0] == 200


def test_reload_on_code_change(gunicorn: StartGunicorn, tmp_path: Path) -> None:
    (tmp_path / "reloaded.py").write_text(
        'from h3green import H3\napp = H3()\napp.get("/", lambda e: "one")\n'
    )
    server = gunicorn("reloaded:app", H3WORKER, "--reload")
    assert get(server.address) == (200, b"one")
    (tmp_path / "reloaded.py").write_text(
        'from h3green import H3\napp = H3()\napp.get("/", lambda e: "two")\n'
    )
    server.wait_for("Booting worker with pid", count=2)
    wait_until(lambda: get(server.address) == (200, b"two"), BOOT_TIMEOUT, "the reloaded app to answer")


# -- settings --------------------------------------------------------------------------------


def test_access_log_format_limits_and_env(gunicorn: StartGunicorn, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    server = gunicorn(
        "small_app:app",
        H3WORKER,
        "--access-logfile",
        str(access),
        "--access-logformat",
        '%(h)s "%(r)s" %(s)s %(b)s %(m)s %(U)s %(q)s %(a)s',
        "--limit-request-line",
        "100",
        "--env",
        "H3GREEN_MAX_BODY_SIZE=8",
    )
    assert get(server.address, "/nowhere?a=1")[0] == 404
    assert get(server.address, "/echo", "POST", b"12345678") == (200, b"12345678")
    assert get(server.address, "/echo", "POST", b"123456789")[0] == 413
    assert get(server.address, "/" + "x" * 200)[0] == 414
    wait_until(lambda: access.read_text().count("\n") >= 4, 5, "four access log lines")
    lines = access.read_text().splitlines()
    assert lines[0].startswith('127.0.0.1 "GET /nowhere?a=1 HTTP/1.1" 404 ')
    assert lines[0].endswith(" GET /nowhere a=1 -")
    assert lines[1].startswith('127.0.0.1 "POST /echo HTTP/1.1" 200 8 POST /echo')
    assert '" 413 ' in lines[2]


def test_worker_connections_bound_streams(gunicorn: StartGunicorn) -> None:
    server = gunicorn("small_app:app", H3WORKER, "--worker-connections", "2")
    clients = [RawClient(server.address, timeout=CLIENT_TIMEOUT) for _ in range(2)]
    try:
        for client in clients:
            assert client.open("GET", "/wait").status_code == 200
            assert b"data: open" in next(client.pieces())
        status, body = get(server.address)
        assert status == 503
        assert b"connection limit" in body
    finally:
        for client in clients:
            client.close()
    wait_until(lambda: get(server.address)[0] == 200, 5, "a free slot")
    assert get(server.address) == (200, b"Hello, World!")


def test_keepalive_closes_idle_connections(gunicorn: StartGunicorn) -> None:
    server = gunicorn("small_app:app", H3WORKER, "--keep-alive", "1")
    client = RawClient(server.address, timeout=CLIENT_TIMEOUT)
    try:
        assert client.get("/") == (200, b"Hello, World!")
        started = time.monotonic()
        assert client.sock.recv(100) == b""  # the server closed the idle connection
        assert 0.5 < time.monotonic() - started < 5
    finally:
        client.close()


def test_non_h3_app_fails_with_a_clear_message(gunicorn: StartGunicorn, tmp_path: Path) -> None:
    (tmp_path / "plain_wsgi.py").write_text(
        textwrap.dedent(
            """
            def app(environ, start_response):
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"plain"]
            """
        )
    )
    server = gunicorn("plain_wsgi:app", H3WORKER, wait=False)
    # The worker exits with gunicorn's boot-error code, so the master stops instead of
    # respawning it forever (its own exit status varies with gunicorn's reaping path).
    server.wait_exit(BOOT_TIMEOUT)
    assert "exited with code 3" in server.log
    assert "Worker failed to boot" in server.log
    assert "H3Worker serves h3green apps only" in server.log
    assert "-k gevent" in server.log


def test_gevent_worker_serves_the_wsgi_path(gunicorn: StartGunicorn) -> None:
    server = gunicorn("small_app:app", "gevent")
    assert get(server.address) == (200, b"Hello, World!")
    assert get(server.address, "/echo", "POST", b"abc") == (200, b"abc")
    client = RawClient(server.address, timeout=CLIENT_TIMEOUT)
    try:
        assert client.open("GET", "/wait").status_code == 200
        assert b"data: open" in b"".join(next(client.pieces()) for _ in range(2))
    finally:
        client.close()


@pytest.mark.parametrize("worker", [H3WORKER, "gevent"])
def test_port_flask_example_under_gunicorn(gunicorn: StartGunicorn, worker: str) -> None:
    server = gunicorn("examples.port_flask:app", worker)
    stream = RawClient(server.address, timeout=CLIENT_TIMEOUT)
    try:
        assert stream.open("GET", "/updates").status_code == 200
        status, page = get(server.address, "/legacy/")
        assert status == 200 and b'action="/legacy/notes"' in page
        assert get(server.address, "/legacy/api/notes", "POST", b'{"text": "hi"}')[0] == 400  # no JSON type
        assert get(server.address, "/api/notes", "POST", b'{"text": "hi"}')[0] == 201
        received = stream.read_until(b"event: note", timeout=10)
        assert b'"text":"hi"' in received
        assert get(server.address, "/legacy/api/notes") == (200, b'[{"id":1,"text":"hi"}]\n')
    finally:
        stream.close()


@pytest.mark.parametrize("worker", [H3WORKER, "gevent"])
def test_client_leaving_ends_the_stream(gunicorn: StartGunicorn, worker: str, tmp_path: Path) -> None:
    server = gunicorn("small_app:app", worker)
    client = RawClient(server.address, timeout=CLIENT_TIMEOUT)
    try:
        assert client.open("GET", "/ticks").status_code == 200
        pieces = client.pieces()
        received = b""
        while received.count(b"data: tick") < 2:
            received += next(pieces)
    finally:
        client.close()
    marker = tmp_path / "closed.txt"
    wait_until(marker.exists, 5, "the stream's on_close to run")
    assert marker.read_text() == "closed\n"  # on_close ran once, the callback ended
    assert get(server.address) == (200, b"Hello, World!")


def test_unix_socket_bind(gunicorn: StartGunicorn, tmp_path: Path) -> None:
    path = tmp_path / "h3.sock"
    server = gunicorn("small_app:app", H3WORKER, "-b", f"unix:{path}")
    server.wait_for("h3green listening on unix:", count=1)
    client = RawClient(str(path), timeout=CLIENT_TIMEOUT)
    try:
        assert client.get("/") == (200, b"Hello, World!")
    finally:
        client.close()
    assert get(server.address) == (200, b"Hello, World!")  # the TCP bind still serves
    assert "Logging error" not in server.log
