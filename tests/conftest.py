"""Fixtures shared by the live-server test modules, and the hook that marks live tests."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from h3green import H3, Server

#: ``serve_app(app, **options)`` starts an in-process server on an ephemeral port.
ServeApp = Callable[..., Server]

# Names whose use means real sockets on 127.0.0.1 or a process of its own.
_LIVE_NAMES = frozenset(
    {
        "serve_app",
        "start_cli",
        "RawClient",
        "Popen",
        "subprocess",
        "gsubprocess",
        "create_connection",
        "gsocket",
        "HTTPConnection",
        "make_server",
        "httpx",
    }
)


def _names(code: types.CodeType) -> set[str]:
    """Global and attribute names a function uses, its nested functions included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _is_live(item: pytest.Item) -> bool:
    if "serve_app" in getattr(item, "fixturenames", ()):
        return True
    functions = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    if info is not None:
        functions += [defs[-1].func for defs in info.name2fixturedefs.values() if defs]
    return any(
        _names(function.__code__) & _LIVE_NAMES
        for function in functions
        if function is not None and hasattr(function, "__code__")
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``live`` every test that opens real sockets or starts a process: through the
    ``serve_app`` fixture, a fixture of its own, or directly (``-m "not live"`` keeps the
    in-memory suite)."""
    for item in items:
        if item.get_closest_marker("live") is None and _is_live(item):
            item.add_marker(pytest.mark.live)


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
