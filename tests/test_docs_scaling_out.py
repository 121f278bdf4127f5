"""docs/scaling-out.md runs as written: its app under gunicorn with two H3Worker workers on
a real Redis, and its publishing script as a plain process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import test_gunicorn
from helpers import REPO, RawClient
from redis_helpers import RedisServer
from test_gunicorn import CLIENT_TIMEOUT, H3WORKER, StartGunicorn

from h3green.redis import parse_id

pytestmark = pytest.mark.live

DOC = Path(REPO) / "docs" / "scaling-out.md"
gunicorn = test_gunicorn.gunicorn


def snippets() -> dict[str, str]:
    """The doc's python blocks, by the file name on their first line."""
    found = {}
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S):
        name = block.splitlines()[0].removeprefix("# ").strip()
        found[name] = block
    return found


def test_the_doc_app_and_script(gunicorn: StartGunicorn, redis_server: RedisServer, tmp_path: Path) -> None:
    files = snippets()
    assert set(files) == {"app.py", "publish.py"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    command = re.search(r"REDIS_URL=\S+ (gunicorn .*) app:app", DOC.read_text())
    assert command is not None and "-k h3green.workers.H3Worker" in command[1]
    server = gunicorn("app:app", H3WORKER, "-w", "2", env={"REDIS_URL": redis_server.url})
    server.wait_for(r"h3green listening on", count=2)
    env = {**os.environ, "REDIS_URL": redis_server.url, "PYTHONPATH": str(REPO)}

    def publish(title: str) -> str:
        done = subprocess.run(
            [sys.executable, str(tmp_path / "publish.py"), title],
            env=env,
            capture_output=True,
            timeout=30,
            check=True,
        )
        return done.stdout.decode().strip()

    first = publish("before anyone listened")
    client = RawClient(server.address, timeout=CLIENT_TIMEOUT)
    try:
        assert client.open("GET", "/news").status_code == 200
        events = client.events()
        replayed = next(events)  # replay=10
        assert (replayed.id, replayed.event, replayed.data) == (
            first,
            "news",
            '{"title":"before anyone listened"}',
        )
        poster = RawClient(server.address, timeout=CLIENT_TIMEOUT)
        status, _, _ = poster.fetch(
            "POST", "/news", b'{"title": "from a worker"}', [("content-type", "application/json")]
        )
        poster.close()
        assert status == 200
        second = next(events)
        assert second.data == '{"title":"from a worker"}' and parse_id(second.id or "") > parse_id(first)  # type: ignore[operator]
    finally:
        client.close()
