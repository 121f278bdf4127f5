"""Every ``python`` block of docs/utils-web.md runs, in a directory holding ``public/``."""

from __future__ import annotations

from pathlib import Path

import gevent
import pytest
from helpers.docs import python_blocks

DOC, BLOCKS = python_blocks("utils-web.md")


def test_the_page_has_a_block_per_utility() -> None:
    assert len(BLOCKS) == 5


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_example_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    public = tmp_path / "public"
    public.mkdir()
    (public / "index.html").write_text("<h1>hi</h1>")
    (public / "app.js").write_text("console.log(1)")
    (public / "app.js.br").write_bytes(b"brotli")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {"__name__": "docs_example", "gevent": gevent})
