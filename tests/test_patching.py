"""Late monkey patching is warned about at start, naming the modules that kept blocking
originals; ``serve()`` in a script without logging configured still says where it listens."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import gevent.monkey
import pytest

from h3green import _patching

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent

SCRIPT_TAIL = """
from h3green import H3, serve

app = H3()
app.get("/", lambda event: "hi")
serve(app, port=0)
"""


def run_script(tmp_path: Path, head: str) -> tuple[int, str]:
    """Run a script that serves, stop it with SIGTERM once it listens: (exit code, stderr)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(head) + SCRIPT_TAIL)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    lines: list[str] = []
    # A script that never says it listens must not hang the test: kill it after 20 s.
    watchdog = threading.Timer(20, proc.kill)
    watchdog.start()
    try:
        for line in proc.stderr:
            lines.append(line)
            if "listening on" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=20)
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
        proc.stderr.close()
    return proc.returncode, "".join(lines) + rest


def test_late_patching_is_warned_about_naming_the_module_and_what_it_holds(tmp_path: Path) -> None:
    code, err = run_script(
        tmp_path,
        """
        from time import sleep
        from socket import create_connection
        from gevent import monkey
        monkey.patch_all()
        """,
    )
    assert code == 0, err
    assert (
        "gevent monkey patching came after these modules were imported and kept blocking originals: "
        "__main__ (socket.create_connection, time.sleep)."
    ) in err
    assert "monkey patching is not active" not in err


def test_patching_first_is_quiet_and_serve_says_where_it_listens_once(tmp_path: Path) -> None:
    code, err = run_script(
        tmp_path,
        """
        from gevent import monkey
        monkey.patch_all()
        from time import sleep
        """,
    )
    assert code == 0, err
    assert re.fullmatch(r"h3green listening on http://127\.0\.0\.1:\d+\n", err), err


def test_serve_without_patching_warns_and_still_says_where(tmp_path: Path) -> None:
    code, err = run_script(tmp_path, "")
    assert code == 0, err
    assert "gevent monkey patching is not active" in err
    assert len(re.findall(r"h3green listening on http://127\.0\.0\.1:\d+", err)) == 1


def test_serve_leaves_configured_logging_alone(tmp_path: Path) -> None:
    code, err = run_script(
        tmp_path,
        """
        from gevent import monkey
        monkey.patch_all()
        import logging
        logging.basicConfig(level=logging.INFO, format="LOG %(message)s")
        """,
    )
    assert code == 0, err
    assert re.search(r"^LOG h3green listening on http://127\.0\.0\.1:\d+$", err, re.MULTILINE), err
    assert len(re.findall(r"listening on", err)) == 1


# -- in process, with gevent's answers faked ----------------------------------------------


@pytest.fixture
def patched_sleep(monkeypatch: pytest.MonkeyPatch) -> object:
    """As if patch_all() had replaced time.sleep: returns the "original" (held by no module)."""
    original = object()
    monkeypatch.setattr(gevent.monkey, "is_module_patched", lambda name: True)
    monkeypatch.setattr(
        gevent.monkey, "is_object_patched", lambda mod, name: (mod, name) == ("time", "sleep")
    )
    monkeypatch.setattr(gevent.monkey, "get_original", lambda mod, name: original)
    return original


def test_late_references_finds_user_modules_only(
    patched_sleep: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("userlib_h3g", "_private_h3g", "gevent.fake_h3g", "posix_like_h3g"):
        module = types.ModuleType(name)
        module.sleep = patched_sleep  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "not_a_module_h3g", 42)
    assert _patching.late_references() == {"posix_like_h3g": ["time.sleep"], "userlib_h3g": ["time.sleep"]}
    message = _patching.patching_problems()
    assert message is not None
    assert "posix_like_h3g (time.sleep); userlib_h3g (time.sleep)" in message


def test_no_problem_when_nothing_kept_an_original(patched_sleep: object) -> None:
    assert _patching.late_references() == {}
    assert _patching.patching_problems() is None


def test_nothing_to_look_for_when_nothing_is_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gevent.monkey, "is_object_patched", lambda mod, name: False)
    assert _patching.late_references() == {}
