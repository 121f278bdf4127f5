"""The ``python`` blocks of a documentation page, for the tests that run them."""

from __future__ import annotations

import re
from pathlib import Path

from .cli import REPO

_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(page: str) -> tuple[Path, list[str]]:
    """``docs/<page>`` and its ``python`` blocks, each padded with the lines before it so
    that a failure points at the page's own line numbers."""
    path = REPO / "docs" / page
    text = path.read_text()
    blocks = ["\n" * text.count("\n", 0, found.start(1)) + found.group(1) for found in _BLOCK.finditer(text)]
    return path, blocks
