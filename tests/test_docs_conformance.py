"""Every ``python`` block of docs/http-conformance.md runs."""

from __future__ import annotations

import pytest
from helpers.docs import python_blocks

DOC, BLOCKS = python_blocks("http-conformance.md")


def test_the_page_has_its_example() -> None:
    assert len(BLOCKS) == 1


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_example_runs(code: str) -> None:
    exec(compile(code, str(DOC), "exec"), {"__name__": "docs_example"})
