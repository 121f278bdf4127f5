"""``H3Worker`` driven in-process: settings mapping, the run loop, shutdown, logging.

The real-process behaviour is in test_gunicorn.py; here the same worker class runs on a
gevent socket inside the test process, so each branch is observable and measured.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent import socket as gsocket
from gunicorn.config import Config as GunicornConfig  # type: ignore[import-untyped]
from gunicorn.glogging import Logger  # type: ignore[import-untyped]
from helpers import RawClient, wait_until
from test_gunicorn import CLIENT_TIMEOUT, get

from h3green import H3, H3Event, SSEWriter, wsgi_mount
from h3green.workers import H3Worker, config_from_gunicorn
from h3green.wsgi import WSGIAdapter


def make_app() -> H3:
    app = H3()
    app.get("/", lambda e: "hi")

    @app.get("/events")
    def events(event: H3Event) -> None:
        event.start_sse()

        def run(writer: SSEWriter) -> None:
            writer.send_event("open")
            while writer.is_active:
                gevent.sleep(0.02)

        event.set_stream_callback(run)

    return app


class _Loaded:
    def __init__(self, target: Any) -> None:
        self.target = target

    def wsgi(self) -> Any:
        return self.target


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = []
    for name in ("h3green", "h3green.access"):
        log = logging.getLogger(name)
        saved.append((log, list(log.handlers), log.propagate, log.level))
    multiprocess = wsgi_mount.MULTIPROCESS
    yield
    for log, handlers, propagate, level in saved:
        log.handlers[:] = handlers
        log.propagate = propagate
        log.setLevel(level)
    wsgi_mount.MULTIPROCESS = multiprocess


def make_worker(tmp_path: Path, target: Any, **settings: Any) -> H3Worker:
    cfg = GunicornConfig()
    cfg.set("errorlog", str(tmp_path / "error.log"))
    for name, value in settings.items():
        cfg.set(name, value)
    listener = gsocket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    worker = H3Worker(1, os.getppid(), [listener], _Loaded(target), 30, cfg, Logger(cfg))
    return worker


@pytest.fixture
def worker_factory(tmp_path: Path, restore_logging: None) -> Iterator[Any]:
    made: list[H3Worker] = []

    def factory(target: Any, **settings: Any) -> H3Worker:
        worker = make_worker(tmp_path, target, **settings)
        made.append(worker)
        return worker

    yield factory
    for worker in made:
        for sock in worker.sockets:
            sock.close()
        worker.tmp.close()
        worker.log.close_on_exec()
        for handler in worker.log.error_log.handlers + worker.log.access_log.handlers:
            handler.close()


def address(worker: H3Worker) -> tuple[str, int]:
    host, port = worker.sockets[0].getsockname()[:2]
    return host, port


def test_worker_serves_logs_and_shuts_streams_down(worker_factory: Any, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    worker = worker_factory(
        make_app(), accesslog=str(access), access_log_format="%(h)s %(r)s %(s)s %(b)s %(p)s"
    )
    worker.load_wsgi()
    runner = gevent.spawn(worker.run)
    try:
        assert get(address(worker)) == (200, b"hi")
        stream = RawClient(address(worker), timeout=CLIENT_TIMEOUT)
        assert stream.open("GET", "/events").status_code == 200
        pieces = stream.pieces()
        assert b"data: open" in next(pieces)
        started = time.monotonic()
        worker.alive = False
        rest = b"".join(pieces)
        assert b"event: shutdown" in rest
        runner.join(5)
        assert runner.dead and time.monotonic() - started < 3
        stream.close()
    finally:
        runner.kill()
    text = access.read_text()
    assert f"127.0.0.1 GET / HTTP/1.1 200 2 <{os.getpid()}>" in text
    # A stream is logged when its head leaves, and again with its bytes when it ends.
    stream_lines = [line for line in text.splitlines() if " GET /events " in line]
    assert len(stream_lines) == 2 and " 200 0 " in stream_lines[0]
    assert int(stream_lines[1].split()[-2]) > 0
    assert wsgi_mount.MULTIPROCESS is False


def test_access_handler_formats_rejected_requests(worker_factory: Any, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    worker = worker_factory(make_app(), accesslog=str(access), access_log_format="%(h)s|%(r)s|%(s)s|%(b)s")
    worker.load_wsgi()
    runner = gevent.spawn(worker.run)
    try:
        sock = gsocket.create_connection(address(worker), timeout=5)
        sock.sendall(b"NOT HTTP\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
        sock.close()
        deadline = time.monotonic() + 5
        while "400" not in access.read_text() and time.monotonic() < deadline:
            gevent.sleep(0.02)
        assert "127.0.0.1|- - HTTP/1.1|400|-" in access.read_text()
        logging.getLogger("h3green.access").info("odd record")
        assert "-|- - HTTP/1.1|-|-" in access.read_text()
    finally:
        worker.alive = False
        runner.join(5)


def test_max_requests_ends_the_run_loop(worker_factory: Any) -> None:
    worker = worker_factory(make_app(), max_requests=2, workers=2)
    worker.load_wsgi()
    runner = gevent.spawn(worker.run)
    try:
        assert get(address(worker))[0] == 200
        assert worker.alive
        assert get(address(worker))[0] == 200
        runner.join(5)
        assert runner.dead and not worker.alive
        assert wsgi_mount.MULTIPROCESS is True
    finally:
        runner.kill()


def test_heartbeat_notifies_during_run_and_shutdown(
    worker_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = worker_factory(make_app())
    worker.timeout = 0.4  # notify every 0.1 s
    beats: list[float] = []
    monkeypatch.setattr(worker, "notify", lambda: beats.append(time.monotonic()))
    worker.load_wsgi()
    runner = gevent.spawn(worker.run)
    wait_until(lambda: len(beats) >= 3, 5, "three heartbeats to the arbiter")
    notifier = gevent.spawn(worker._keep_notifying, 0.05)
    count = len(beats)
    wait_until(lambda: len(beats) > count, 5, "the notifier's heartbeat")
    notifier.kill()
    worker.alive = False
    runner.join(5)
    assert runner.dead


def test_non_h3_app_is_refused(worker_factory: Any, tmp_path: Path) -> None:
    worker = worker_factory(lambda environ, start_response: [])
    with pytest.raises(SystemExit) as exit_info:
        worker.load_wsgi()
    assert exit_info.value.code == 3
    assert "H3Worker serves h3green apps only" in (tmp_path / "error.log").read_text()


def test_wsgi_adapter_is_unwrapped(worker_factory: Any) -> None:
    app = make_app()
    worker = worker_factory(WSGIAdapter(app))
    worker.load_wsgi()
    assert worker.app_h3 is app


def test_h3green_logs_go_to_gunicorn_unless_configured(worker_factory: Any, tmp_path: Path) -> None:
    worker = worker_factory(make_app())
    worker._route_logs()
    logging.getLogger("h3green").warning("routed warning")
    assert "routed warning" in (tmp_path / "error.log").read_text()
    own = logging.NullHandler()
    logging.getLogger("h3green").handlers[:] = [own]
    worker._route_logs()
    assert logging.getLogger("h3green").handlers == [own]


# -- settings -----------------------------------------------------------------------------


def test_gunicorn_settings_map_to_config() -> None:
    cfg = GunicornConfig()
    for name, value in {
        "worker_connections": 7,
        "keepalive": 3,
        "graceful_timeout": 9,
        "limit_request_line": 0,
        "limit_request_fields": 20,
        "limit_request_field_size": 32768,
        "forwarded_allow_ips": "10.0.0.0/8, 127.0.0.1",
    }.items():
        cfg.set(name, value)
    options = config_from_gunicorn(cfg, {})
    assert options == {
        "forwarded_allow_ips": "10.0.0.0/8,127.0.0.1",
        "max_connections": 7,
        "keepalive_timeout": 3.0,
        "shutdown_timeout": 9.0,
        "max_request_line": 65536,
        "max_header_count": 20,
        "max_header_bytes": 32768,
        "access_log": False,
    }
    cfg.set("limit_request_line", 100)
    assert config_from_gunicorn(cfg, {})["max_request_line"] == 100


def test_environment_overrides() -> None:
    env = {
        "H3GREEN_MAX_BODY_SIZE": "10",
        "H3GREEN_SSE_HEARTBEAT": "2.5",
        "H3GREEN_ACCESS_LOG": "yes",
        "H3GREEN_SERVER_HEADER": "h3green",
        "H3GREEN_SSE_SHUTDOWN_EVENT": "none",
        "H3GREEN_MAX_CONNECTIONS": "5",
        "UNRELATED": "1",
    }
    options = config_from_gunicorn(GunicornConfig(), env)
    assert options["max_body_size"] == 10
    assert options["sse_heartbeat"] == 2.5
    assert options["access_log"] is True
    assert options["server_header"] == "h3green"
    assert options["sse_shutdown_event"] is None
    assert options["max_connections"] == 5
    options = config_from_gunicorn(
        GunicornConfig(), {"H3GREEN_SERVER_HEADER": "none", "H3GREEN_SSE_SHUTDOWN_EVENT": "data: bye\n\n"}
    )
    assert options["server_header"] is None
    assert options["sse_shutdown_event"] == b"data: bye\n\n"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("H3GREEN_ACCESS_LOG", "maybe", "must be a boolean"),
        ("H3GREEN_MAX_BODY_SIZE", "lots", "must be a number"),
    ],
)
def test_bad_environment_values(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config_from_gunicorn(GunicornConfig(), {name: value})


def test_bad_access_log_format_is_reported_once_per_record(worker_factory: Any, tmp_path: Path) -> None:
    worker = worker_factory(make_app(), accesslog=str(tmp_path / "access.log"), access_log_format="%(h)d")
    worker._route_logs()
    logging.getLogger("h3green.access").info(
        '%s - "%s %s HTTP/%s" %d %d', "127.0.0.1", "GET", "/", "1.1", 200, 2
    )
    assert "cannot format an access record" in (tmp_path / "error.log").read_text()
