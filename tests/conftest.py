"""Fixtures shared by the live-server test modules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from h3green import H3, Server

#: ``serve_app(app, **options)`` starts an in-process server on an ephemeral port.
ServeApp = Callable[..., Server]


@pytest.fixture
def serve_app() -> Iterator[ServeApp]:
    """Start ``h3green.Server`` instances on 127.0.0.1; each is stopped when the test ends,
    whatever happened."""
    servers: list[Server] = []

    def start(app: H3, **options: Any) -> Server:
        server = Server(app, port=0, access_log=False, **options)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(timeout=2)
