"""The shared test helpers do what the tests rely on them for."""

from __future__ import annotations

import gevent
import gevent.queue
import pytest
from helpers import switches_during, wait_until


def test_switches_during_sees_a_wait_and_only_a_wait() -> None:
    assert switches_during(lambda: sum(range(1000))) == 0
    assert switches_during(lambda: gevent.sleep(0.001)) >= 1
    queue: gevent.queue.Queue[int] = gevent.queue.Queue(1)
    queue.put(1)
    gevent.spawn_later(0.01, queue.get)
    assert switches_during(lambda: queue.put(2)) >= 1  # blocked until the get


def test_wait_until_names_what_it_waited_for() -> None:
    wait_until(lambda: True, 0.1)
    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for the moon"):
        wait_until(lambda: False, 0.05, "the moon")
    with pytest.raises(AssertionError, match="waiting for 42"):
        wait_until(lambda: False, 0.05, lambda: 42)
