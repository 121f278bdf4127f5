"""``Config``: every field typed and checked when made; one string parser for flags and env."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import h3green
from h3green.config import Config, parse_field
from h3green.server import Config as ServerConfig


def test_config_is_exported_where_it_is_documented() -> None:
    assert h3green.Config is Config is ServerConfig


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_connections": -1}, ValueError, "max_connections must be >= 1"),
        ({"max_connections": 0}, ValueError, "max_connections must be >= 1"),
        ({"max_header_count": 0}, ValueError, "max_header_count must be >= 1"),
        ({"max_body_size": -5}, ValueError, "max_body_size must be >= 0"),
        ({"keepalive_timeout": -0.1}, ValueError, "keepalive_timeout must be >= 0"),
        ({"sse_heartbeat": float("nan")}, ValueError, "sse_heartbeat must be >= 0"),
        ({"max_body_size": "10"}, TypeError, "max_body_size must be int"),
        ({"max_body_size": 1.5}, TypeError, "max_body_size must be int"),
        ({"max_connections": True}, TypeError, "max_connections must be int"),
        ({"access_log": 1}, TypeError, "access_log must be bool"),
        ({"sse_shutdown_event": "data: x\n\n"}, TypeError, "sse_shutdown_event must be bytes"),
        ({"server_header": "x\r\nset-cookie: a=b"}, ValueError, "server_header must be printable"),
        ({"server_header": "caf\u0101"}, ValueError, "server_header must be printable"),
        ({"http_parser": "fast"}, ValueError, "http_parser must be one of"),
    ],
)
def test_bad_values_are_refused_when_made(options: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Config(**options)  # type: ignore[arg-type]


def test_good_values_are_kept() -> None:
    config = Config(
        keepalive_timeout=0,
        sse_heartbeat=2,
        server_header="h3green caf\u00e9",
        sse_shutdown_event=None,
        max_body_size=0,
    )
    assert config.keepalive_timeout == 0 and config.sse_heartbeat == 2
    assert config.server_header == "h3green caf\u00e9" and config.sse_shutdown_event is None
    assert Config() == Config()


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("max_body_size", "10", 10),
        ("sse_heartbeat", "2.5", 2.5),
        ("access_log", "Yes", True),
        ("access_log", "off", False),
        ("server_header", "h3green", "h3green"),
        ("server_header", "None", None),
        ("server_header", "", ""),
        ("sse_shutdown_event", "none", None),
        ("sse_shutdown_event", "", None),
        ("sse_shutdown_event", "data: bye\n\n", b"data: bye\n\n"),
        ("http_parser", "h11", "h11"),
    ],
)
def test_parse_field(name: str, text: str, value: object) -> None:
    assert parse_field(name, text) == value


def test_parse_field_names_its_source_in_errors() -> None:
    with pytest.raises(ValueError, match="H3GREEN_ACCESS_LOG must be a boolean, got 'maybe'"):
        parse_field("access_log", "maybe", "H3GREEN_ACCESS_LOG")
    with pytest.raises(ValueError, match="max_body_size must be a number, got 'lots'"):
        parse_field("max_body_size", "lots")


def test_every_field_parses_from_its_default_text() -> None:
    defaults = Config()
    for field in dataclasses.fields(Config):
        value = getattr(defaults, field.name)
        text = value.decode() if isinstance(value, bytes) else str(value)
        assert parse_field(field.name, text) == value, field.name


def test_the_docs_examples_run() -> None:
    text = (Path(__file__).parent.parent / "docs" / "config.md").read_text()
    blocks = [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]
    assert len(blocks) == 2
    for code in blocks:
        exec(compile(code, "docs/config.md", "exec"), {})
