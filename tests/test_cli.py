"""``python -m h3green``: app loading, flags, one-line errors, signals, exit codes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from h3green import H3
from h3green.__main__ import AppLoadError, _parser, load_app, main

APP_SOURCE = textwrap.dedent(
    """
    import time
    import gevent.monkey
    from h3green import H3

    app = H3()

    @app.get("/")
    def root(event):
        time.sleep(0.001)  # a blocking call: fine only when patched
        return {"patched": gevent.monkey.is_module_patched("socket")}

    not_an_app = 42
    """
)


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "cliapp.py"
    path.write_text(APP_SOURCE)
    return path


def test_load_app_from_file_path(app_file: Path) -> None:
    app = load_app(f"{app_file}:app")
    assert isinstance(app, H3)


def test_load_app_from_module_defaults_to_attribute_app(
    app_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(app_file.parent))
    monkeypatch.delitem(sys.modules, "cliapp", raising=False)
    assert isinstance(load_app("cliapp"), H3)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (":app", "expected module:app"),
        ("no_such_module_h3g:app", "cannot import 'no_such_module_h3g'"),
        ("os:no_such_attr", "has no attribute 'no_such_attr'"),
        ("os:sep", "is a str, not an h3green.H3 app"),
        ("/no/such/file.py:app", "no such file"),
    ],
)
def test_load_app_errors_are_precise(spec: str, message: str) -> None:
    with pytest.raises(AppLoadError, match=re.escape(message)):
        load_app(spec)


def test_load_app_reports_errors_raised_by_the_module(tmp_path: Path) -> None:
    broken = tmp_path / "broken_h3g.py"
    broken.write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(AppLoadError, match="RuntimeError: boom at import"):
        load_app(f"{broken}:app")


def test_main_bad_app_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no_such_module_h3g:app"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("h3green: error: cannot import")


def test_every_config_field_is_a_flag() -> None:
    args = _parser().parse_args(
        ["m:app", "--max-body-size", "10", "--sse-heartbeat", "0.5", "--no-access-log"]
    )
    assert args.max_body_size == 10
    assert args.sse_heartbeat == 0.5
    assert args.access_log is False
    assert args.server_header is None


def _start(app_file: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "h3green", f"{app_file}:app", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=app_file.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if found:
            return proc, int(found.group(1))
    proc.kill()
    raise AssertionError(f"server did not start: {proc.communicate()[0]}")


def _get(port: int, path: str = "/") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serves_patched_and_stops_cleanly_on_signal(app_file: Path, signum: int) -> None:
    proc, port = _start(app_file, "--no-access-log")
    try:
        response = _get(port)
        assert response.startswith(b"HTTP/1.1 200 OK")
        assert response.endswith(b'{"patched":true}')
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "h3green stopped" in output
    assert "Traceback" not in output
    assert "monkey patching is not active" not in output


def test_access_log_goes_to_the_access_logger(app_file: Path) -> None:
    proc, port = _start(app_file)
    try:
        _get(port, "/?x=1")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert re.search(r'h3green\.access: 127\.0\.0\.1 - "GET /\?x=1 HTTP/1\.1" 200 \d+', output)


def test_port_in_use_is_a_one_line_error(app_file: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "h3green", f"{app_file}:app", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_flags_share_the_config_parser(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["m:app", "--server-header", "none", "--keepalive-timeout", "0"])
    assert args.server_header is None and args.keepalive_timeout == 0.0
    with pytest.raises(SystemExit):
        _parser().parse_args(["m:app", "--max-body-size", "lots"])
    assert "--max-body-size must be a number, got 'lots'" in capsys.readouterr().err


def test_a_bad_flag_value_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app_file = tmp_path / "tiny_app.py"
    app_file.write_text("from h3green import H3\napp = H3()\n")
    assert main([f"{app_file}:app", "--max-connections", "-1"]) == 2
    assert "max_connections must be >= 1" in capsys.readouterr().err
