"""The package as a user gets it: a wheel built from this tree, installed into a fresh
virtual environment, run through its ``h3green`` console script.

The venv borrows the dependencies already installed for the test run (a ``.pth`` line
naming this interpreter's site-packages, whose own ``.pth`` files, such as an editable
install of this tree, are not processed) and gets h3green itself only from the wheel. The
extras, each alone in a venv of its own, are checked by ``.ci/check-install``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import sysconfig
import textwrap
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import get_once

import h3green

# Seconds each (a build, a benchmark run): deselect with -m "not slow" for a quick loop.
pytestmark = [pytest.mark.live, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
BIN = "Scripts" if sys.platform == "win32" else "bin"
# Nothing from the environment may point the venv back at this tree.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a fresh venv with the wheel of this tree installed."""
    base = tmp_path_factory.mktemp("install")
    wheels = base / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=240,
        env=CLEAN_ENV,
    )
    [wheel] = wheels.glob("h3green-*.whl")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / BIN / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "_h3green_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=120,
        env=CLEAN_ENV,
    )
    return env_dir / BIN


APP = textwrap.dedent(
    """
    import time
    import gevent.monkey
    from h3green import H3

    app = H3()

    @app.get("/")
    def root(event):
        time.sleep(0.001)  # a blocking call: fine only when patched
        return {"patched": gevent.monkey.is_module_patched("socket")
                and gevent.monkey.is_module_patched("time")}
    """
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "installedapp.py").write_text(APP)
    return tmp_path


@pytest.fixture
def script(installed: Path, app_dir: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.communicate()


def test_h3green_comes_from_the_wheel(installed: Path, app_dir: Path) -> None:
    where = subprocess.run(
        [str(installed / "python"), "-c", "import h3green; print(h3green.__file__, h3green.__version__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=app_dir,
        env=CLEAN_ENV,
    ).stdout
    path, version = where.split()
    assert Path(path).is_relative_to(installed.parent)
    assert version == h3green.__version__


def test_console_script_version(installed: Path) -> None:
    result = subprocess.run(
        [str(installed / "h3green"), "--version"], capture_output=True, text=True, timeout=60, env=CLEAN_ENV
    )
    assert (result.returncode, result.stdout) == (0, f"h3green {h3green.__version__}\n")


def test_console_script_patches_before_importing_the_app(
    installed: Path, app_dir: Path, script: list[subprocess.Popen[str]]
) -> None:
    proc = subprocess.Popen(
        [str(installed / "h3green"), "installedapp:app", "--port", "0", "--no-access-log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=app_dir,
        env={**CLEAN_ENV, "PYTHONUNBUFFERED": "1"},
    )
    script.append(proc)
    assert proc.stdout is not None
    head: list[str] = []
    for line in proc.stdout:
        head.append(line)
        if found := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
            break
    else:
        raise AssertionError("".join(head))
    response = get_once(int(found.group(1)))
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b'{"patched":true}')
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    output = "".join(head) + rest
    assert proc.returncode == 0, output
    assert "monkey patching is not active" not in output
    assert "imported before" not in output
