"""The public API's edges: typed options that fail at once, what a headers argument
accepts, the usage-error branch of the error tree, ``HTTPError.to_dict``."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

import h3green
from h3green import H3, Config, Headers, HTTPError, Response, Server
from h3green.config import ConfigOptions, make_config
from h3green.errors import (
    ResponseAlreadySent,
    SSEAlreadyStarted,
    SSEError,
    UsageError,
)
from h3green.testing import TestClient
from h3green.wsgi import WSGIAdapter, WSGIConfig
from h3green.wsgi_adapter import WSGIOptions


def _hello() -> H3:
    app = H3()
    app.get("/", lambda event: {"limit": event.max_body_size})
    return app


@pytest.mark.parametrize(("options", "config"), [(ConfigOptions, Config), (WSGIOptions, WSGIConfig)])
def test_option_types_follow_their_config(options: type, config: type) -> None:
    # A field added to the config without its option (or typed apart) fails here.
    names = [field.name for field in dataclasses.fields(config)]
    hints = typing.get_type_hints(config)
    assert typing.get_type_hints(options) == {name: hints[name] for name in names}


def test_server_refuses_an_unknown_option_at_once() -> None:
    with pytest.raises(TypeError, match="max_conections"):
        Server(_hello(), port=0, max_conections=5)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="max_connections must be >= 1"):
        Server(_hello(), port=0, max_connections=0)
    with pytest.raises(TypeError, match="config must be a Config"):
        Server(_hello(), port=0, config={"max_connections": 5})  # type: ignore[arg-type]


def test_server_takes_a_config_and_keywords_over_it() -> None:
    base = Config(max_body_size=10, access_log=False)
    server = Server(_hello(), port=0, config=base, max_connections=7)
    assert (server.config.max_body_size, server.config.max_connections) == (10, 7)
    assert base.max_connections == 1000  # the given config is not changed
    assert Server(_hello(), port=0, config=base).config is base
    assert make_config(None, {"backlog": 5}).backlog == 5


def test_serve_refuses_an_unknown_option_before_listening() -> None:
    with pytest.raises(TypeError, match="acess_log"):
        h3green.serve(_hello(), port=0, acess_log=False)  # type: ignore[call-arg]


def test_test_client_options() -> None:
    with pytest.raises(TypeError, match="max_body"):
        TestClient(_hello(), max_body=5)  # type: ignore[call-arg]
    client = TestClient(_hello(), max_body_size=5)
    assert client.config.access_log is False  # quiet by default
    assert client.get("/").json() == {"limit": 5}
    loud = TestClient(_hello(), config=Config(max_body_size=6))
    assert loud.config.access_log is True  # a given config is taken as it is
    assert loud.get("/").json() == {"limit": 6}


def test_wsgi_adapter_options() -> None:
    with pytest.raises(TypeError, match="sse_queue"):
        WSGIAdapter(_hello(), sse_queue=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="config must be a WSGIConfig"):
        WSGIAdapter(_hello(), config=Config())  # type: ignore[arg-type]
    base = WSGIConfig(max_body_size=5)
    assert WSGIAdapter(_hello(), config=base).config is base
    adapter = WSGIAdapter(_hello(), config=base, sse_queue_size=2)
    assert (adapter.config.max_body_size, adapter.config.sse_queue_size) == (5, 2)
    assert WSGIAdapter(_hello(), sse_heartbeat=0).config.sse_heartbeat == 0


def test_headers_init_accepts_headers() -> None:
    source = Headers([("set-cookie", "a=1"), ("Set-Cookie", "b=2"), ("x", "y")])
    copy = Headers(source)
    assert copy.items() == source.items() == [("set-cookie", "a=1"), ("set-cookie", "b=2"), ("x", "y")]
    copy.append("x", "z")
    assert source.getall("x") == ["y"]  # a copy, not a view
    assert Response("hi", headers=source).headers.getall("set-cookie") == ["a=1", "b=2"]
    assert HTTPError(401, headers=Headers({"www-authenticate": "Basic"})).headers == [
        ("www-authenticate", "Basic")
    ]

    app = H3()
    app.get("/", lambda event: Response("ok", headers=Headers([("x-a", "1"), ("x-a", "2")])))
    assert TestClient(app).get("/", headers=Headers({"x-b": "3"})).headers.getall("x-a") == ["1", "2"]


def test_usage_errors_have_their_branch() -> None:
    for cls in (SSEAlreadyStarted, ResponseAlreadySent):
        assert issubclass(cls, UsageError) and issubclass(cls, RuntimeError)
        assert issubclass(cls, SSEError)  # where the first tree had them
    assert issubclass(UsageError, h3green.H3Error) and not issubclass(UsageError, SSEError)
    assert h3green.UsageError is UsageError
    assert "UsageError" in (h3green.errors.__doc__ or "")


def test_http_error_to_dict() -> None:
    error = HTTPError(404, "no such user", data={"id": 7})
    expected: dict[str, Any] = {
        "status": 404,
        "statusText": "Not Found",
        "message": "no such user",
        "data": {"id": 7},
    }
    assert error.to_dict() == expected
    assert error.to_json() == expected  # the first name still works
