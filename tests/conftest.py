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


@pytest.fixture
def redis_server(tmp_path: Any) -> Iterator[Any]:
    """A ``redis-server`` of this test's own (``tests/redis_helpers.py``), killed at the end."""
    import os

    from redis_helpers import REDIS_SERVER, RedisServer

    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def cooperative_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py on gevent sockets in this unpatched process, as monkey patching does."""
    import redis.connection
    from gevent import socket as gsocket

    monkeypatch.setattr(redis.connection, "socket", gsocket)


@pytest.fixture
def redis_backend(redis_server: Any, cooperative_redis: None) -> Iterator[Any]:
    from h3green.redis import RedisBackend

    backend = RedisBackend(redis_server.url, block=2.0)
    try:
        yield backend
    finally:
        backend.close()
