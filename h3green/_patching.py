"""gevent monkey patching: when h3green does it itself, and what to say when it came late.

This module imports nothing but ``sys``: ``h3green/__init__`` consults it before anything
imports ``socket``, ``ssl`` or ``threading``.
"""

from __future__ import annotations

import sys

__all__ = ["run_as_command"]


def run_as_command() -> bool:
    """True when this import is on the way to ``python -m h3green`` or the ``h3green``
    console script, both of which import this package before any of their own code runs.

    ``sys.argv[0]`` is "-m" only while the interpreter is still locating the main module;
    a console script's is the script's own path (``.../bin/h3green``, ``h3green.exe``).
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-m":
        return sys.orig_argv[sys.orig_argv.index("-m") + 1 :][:1] == ["h3green"]
    return argv0.replace("\\", "/").rsplit("/", 1)[-1] in ("h3green", "h3green.exe", "h3green-script.py")
