"""Every ``python`` block of docs/http-conformance.md runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "http-conformance.md"
TEXT = DOC.read_text()
# Each block padded with the lines before it, so a failure points at the doc's own line.
BLOCKS = [
    "\n" * TEXT.count("\n", 0, match.start(1)) + match.group(1)
    for match in re.finditer(r"```python\n(.*?)```", TEXT, re.S)
]


def test_the_page_has_its_example() -> None:
    assert len(BLOCKS) == 1


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_example_runs(code: str) -> None:
    exec(compile(code, str(DOC), "exec"), {"__name__": "docs_example"})
