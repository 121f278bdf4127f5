"""Helpers shared by the test modules, one home each.

- ``client``: ``RawClient``, the one raw HTTP/1.1 client (byte-exact or through h11),
  ``get_once``, ``accepts`` (something listens), ``free_port``;
- ``waiting``: ``wait_until`` (a condition, not a sleep), ``live_greenlets``,
  ``switches_during`` (a structural check that something never waited);
- ``cli``: ``start_cli``, the one launcher of ``python -m h3green``;
- ``ticking``: the ticking SSE app (``counter_app``; ``helpers.ticking:app`` for the CLI);
- ``wsgi``: calling WSGI apps in-process under ``wsgiref.validate``;
- ``docs``: the ``python`` blocks of a docs page, for the tests that run them;
- ``sse_stream_readers.py``: a script reading many streams from a process of its own.
"""

from .cli import REPO, TESTS, start_cli
from .client import Address, RawClient, RawResponse, Script, accepts, free_port, get_once
from .ticking import counter_app
from .waiting import live_greenlets, switches_during, wait_until, warm_up

__all__ = [
    "REPO",
    "TESTS",
    "Address",
    "RawClient",
    "RawResponse",
    "Script",
    "accepts",
    "counter_app",
    "free_port",
    "get_once",
    "live_greenlets",
    "start_cli",
    "switches_during",
    "wait_until",
    "warm_up",
]
