"""``python -m h3green``: app loading, flags, one-line errors, signals, exit codes."""

from __future__ import annotations

import logging
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from gevent.subprocess import Popen
from helpers import get_once, start_cli

import h3green
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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serves_patched_and_stops_cleanly_on_signal(app_file: Path, signum: int) -> None:
    proc, port = start_cli(f"{app_file}:app", cwd=app_file.parent)
    try:
        response = get_once(port)
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
    proc, port = start_cli(f"{app_file}:app", cwd=app_file.parent, access_log=True)
    try:
        get_once(port, "/?x=1")
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


# -- issue: what a new user hits on the command line ------------------------------------


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"h3green {h3green.__version__}\n"


@pytest.mark.parametrize(
    ("port", "message"),
    [("99999", "99999 is not a TCP port (0-65535"), ("-1", "-1 is not a TCP port"), ("http", "not a number")],
)
def test_bad_port_is_a_usage_error(port: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["m:app", "--port", port])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ")
    assert f"argument --port: {message}" in err
    assert "Traceback" not in err


def test_import_error_shows_the_apps_traceback_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken_at_import.py"
    broken.write_text("import os\n\ndef setup():\n    raise RuntimeError('boom at import')\n\nsetup()\n")
    assert main([f"{broken}:app"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert f'File "{broken}", line 6, in <module>' in err
    assert f'File "{broken}", line 4, in setup' in err
    assert "RuntimeError: boom at import\n" in err
    assert "__main__.py" not in err and "importlib" not in err
    assert err.endswith(
        "h3green: error: importing 'broken_at_import' failed: RuntimeError: boom at import\n".replace(
            "'broken_at_import'", repr(str(broken))
        )
    )


def test_syntax_error_in_the_app_shows_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "syntax_h3g.py"
    broken.write_text("x = 1\ndef f(:\n")
    assert main([f"{broken}:app"]) == 2
    err = capsys.readouterr().err
    assert f'File "{broken}", line 2' in err
    assert "SyntaxError" in err


def test_a_module_the_app_imports_is_missing_shows_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "needs_dep_h3g.py").write_text("import no_such_dependency_h3g\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "needs_dep_h3g", raising=False)
    assert main(["needs_dep_h3g:app"]) == 2
    err = capsys.readouterr().err
    assert 'needs_dep_h3g.py", line 1, in <module>' in err
    assert "h3green: error: importing 'needs_dep_h3g' failed: ModuleNotFoundError" in err


def test_reload_without_watchfiles_says_which_extra(
    app_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "watchfiles", None)
    assert main([f"{app_file}:app", "--reload"]) == 2
    assert capsys.readouterr().err == (
        "h3green: error: --reload needs the watchfiles package: pip install 'h3green[reload]'\n"
    )


@pytest.mark.parametrize(
    ("argv0", "orig_argv", "expected"),
    [
        ("-m", ["python3", "-m", "h3green", "app:app"], True),
        ("-m", ["python3", "-X", "dev", "-m", "h3green"], True),
        ("-m", ["python3", "-m", "pytest"], False),
        ("/venv/bin/h3green", ["/venv/bin/python", "/venv/bin/h3green", "app:app"], True),
        ("C:\\venv\\Scripts\\h3green.exe", ["h3green.exe"], True),
        ("/venv/bin/gunicorn", ["/venv/bin/python", "/venv/bin/gunicorn"], False),
        ("myscript.py", ["python", "myscript.py"], False),
    ],
)
def test_patching_on_import_only_on_the_way_to_the_command(
    argv0: str, orig_argv: list[str], expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", [argv0])
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    assert h3green._patching.run_as_command() is expected


def _reap(proc: Popen[str]) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _read_until(proc: Popen[str], pattern: str, seen: list[str]) -> re.Match[str]:
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if found := re.search(pattern, line):
            return found
    raise AssertionError(f"never printed {pattern!r}:\n{''.join(seen)}")


def test_reload_restarts_on_a_source_change(tmp_path: Path) -> None:
    source = tmp_path / "reloadme.py"
    source.write_text("from h3green import H3\napp = H3()\napp.get('/', lambda event: 'one')\n")
    seen: list[str] = []
    proc, port = start_cli("reloadme:app", "--reload", cwd=tmp_path, seen=seen)
    try:
        assert get_once(port).endswith(b"one")
        source.write_text("from h3green import H3\napp = H3()\napp.get('/', lambda event: 'two')\n")
        port = int(_read_until(proc, r"listening on http://127\.0\.0\.1:(\d+)", seen).group(1))
        assert get_once(port).endswith(b"two")
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
    finally:
        _reap(proc)
    output = "".join(seen) + rest
    assert "h3green reloading on changes under" in output
    assert output.count("h3green stopped") == 2  # the first child on the change, the second at exit
    assert "Traceback" not in output


def test_log_level_debug_shows_requests_and_streams(tmp_path: Path) -> None:
    source = tmp_path / "debugapp.py"
    source.write_text(
        textwrap.dedent(
            """
            from h3green import H3

            app = H3()
            app.get("/", lambda event: "hi")

            def two_events(writer):
                with writer:
                    writer.send_event("a")
                    writer.send_event("b")

            @app.get("/events")
            def events(event):
                event.start_sse()
                event.set_stream_callback(two_events)
            """
        )
    )
    proc, port = start_cli(f"{source}:app", "--log-level", "debug", cwd=source.parent)
    try:
        assert get_once(port).endswith(b"hi")
        assert b"data: b" in get_once(port, "/events")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        _reap(proc)
    assert re.search(r"DEBUG h3green: request GET / from 127\.0\.0\.1\n", output)
    assert "DEBUG h3green: request GET / answered 200\n" in output
    assert "DEBUG h3green: request GET /events answered 200 (event stream follows)\n" in output
    assert "DEBUG h3green: stream GET /events opened\n" in output
    assert "DEBUG h3green: stream GET /events closed after 2 event(s)\n" in output


def test_reload_runs_the_same_command_without_reload_under_watchfiles(
    app_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watchfiles

    calls: list[tuple[tuple[str, ...], dict[str, object]]] = []
    monkeypatch.setattr(watchfiles, "run_process", lambda *paths, **kw: calls.append((paths, kw)))
    monkeypatch.chdir(app_file.parent.parent)
    assert main([f"{app_file}:app", "--reload", "--port", "0"]) == 0
    [(paths, options)] = calls
    assert set(paths) == {str(app_file.parent.parent), str(app_file.parent)}
    assert options["target"] == shlex.join(
        [sys.executable, "-m", "h3green", f"{app_file}:app", "--port", "0"]
    )
    assert options["target_type"] == "command"
    assert isinstance(options["watch_filter"], watchfiles.PythonFilter)


@pytest.mark.parametrize(("argv0", "prog"), [("/venv/bin/h3green", "h3green"), ("-m", "python -m h3green")])
def test_usage_names_the_command_that_was_run(argv0: str, prog: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [argv0])
    assert _parser().prog == prog


def test_debug_level_logs_each_request_and_stream_in_process(caplog: pytest.LogCaptureFixture) -> None:
    from h3green.testing import TestClient

    app = H3()
    app.get("/", lambda event: "hi")
    app.get("/events", lambda event: h3green.EventStream(["a", "b", "c"]))
    with caplog.at_level(logging.DEBUG, logger="h3green"):
        client = TestClient(app)
        client.get("/?q=1")
        with client.stream("GET", "/events") as stream:
            assert [event.data for event in stream.iter_events()] == ["a", "b", "c"]
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert "request GET /?q=1 answered 200" in messages
    assert "request GET /events answered 200 (event stream follows)" in messages
    assert "stream GET /events opened" in messages
    assert "stream GET /events closed after 3 event(s)" in messages


def test_requests_are_not_logged_when_debug_is_off(caplog: pytest.LogCaptureFixture) -> None:
    from h3green.testing import TestClient

    outer, inner = H3(), H3()
    inner.get("/x", lambda event: "x")
    outer.mount("/in", inner)
    with caplog.at_level(logging.INFO, logger="h3green"):
        TestClient(outer).get("/in/x")
    assert not [r for r in caplog.records if r.getMessage().startswith("request ")]
    with caplog.at_level(logging.DEBUG, logger="h3green"):
        caplog.clear()
        outer.freeze()
        TestClient(outer).get("/in/x")
    # Logged once, by the app being served, not again by the app mounted in it.
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")] == [
        "request GET /in/x from 127.0.0.1",
        "request GET /in/x answered 200",
    ]


def test_reload_with_a_module_app_watches_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watchfiles

    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(watchfiles, "run_process", lambda *paths, **kw: calls.append(paths))
    monkeypatch.chdir(tmp_path)
    assert main(["--reload", "pkg.mod:app"]) == 0
    assert calls == [(str(tmp_path),)]
