"""Waiting for a condition instead of sleeping, and counting what is left running."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.socket
import greenlet  # type: ignore[import-untyped]

__all__ = ["live_greenlets", "switches_during", "wait_until", "warm_up"]


def wait_until(
    condition: Callable[[], object], timeout: float = 5.0, what: str | Callable[[], object] = "condition"
) -> None:
    """Poll *condition*, yielding to the loop, until it is true; ``AssertionError``
    naming *what* (a text, or a callable giving details at that moment) after *timeout*."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            detail = what if isinstance(what, str) else what()
            raise AssertionError(f"timed out after {timeout} s waiting for {detail}")
        gevent.sleep(0.005)


def warm_up() -> None:
    """Start what gevent starts once per process (the hub, the resolver's thread pool)."""
    gevent.get_hub()
    gevent.socket.getaddrinfo("127.0.0.1", 80)


def live_greenlets() -> set[gevent.Greenlet]:
    """The gevent greenlets alive now (connections, stream callbacks, anything spawned).

    Compare a set taken after a test with a baseline as subsets (``after <= before``).
    Raw greenlets are left out: the resolver's thread pool grows its own workers (and
    their threads' main greenlets) whenever it likes.
    """
    gc.collect()
    return {obj for obj in gc.get_objects() if isinstance(obj, gevent.Greenlet) and not obj.dead}


def switches_during(fn: Callable[[], object]) -> int:
    """How many times the running greenlet is switched away from while ``fn()`` runs.

    A structural stand-in for "it never waited": anything that blocks (a full queue, a
    socket, a sleep) goes through the hub, which is a switch; pure work is none, however
    slow the machine or the tracer.
    """
    current = greenlet.getcurrent()
    count = 0

    def trace(event: str, args: Any) -> None:
        nonlocal count
        if event in ("switch", "throw") and args[0] is current:
            count += 1

    previous = greenlet.settrace(trace)
    try:
        fn()
    finally:
        greenlet.settrace(previous)
    return count
