"""JSON values handlers commonly return: ISO 8601 dates, UUIDs, Decimals, Enums, dataclasses
and sets encode; ``H3(json_default=...)`` adds the rest; anything else is a 500 whose log
line names the type and the route."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import logging
import uuid
from typing import Any

import pytest

from h3green import H3, H3Event, Response
from h3green._json import json_dumps, make_json_dumps
from h3green.testing import TestClient


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass
class Point:
    x: int
    y: int
    tags: frozenset[str] = frozenset()


@dataclasses.dataclass
class Shape:
    name: str
    corners: list[Point]


WHEN = datetime.datetime(2026, 12, 2, 13, 50, 5, 120000, tzinfo=datetime.UTC)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (WHEN, "2026-12-02T13:50:05.120000+00:00"),
        (datetime.datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05"),
        (datetime.date(2026, 12, 2), "2026-12-02"),
        (datetime.time(9, 30), "09:30:00"),
        (ID, "12345678-1234-5678-1234-567812345678"),
        (decimal.Decimal("1.10"), "1.10"),
        (Color.RED, "red"),
        (Color.BLUE, 2),
        ({3}, [3]),
        (frozenset({"a"}), ["a"]),
        (Point(1, 2), {"x": 1, "y": 2, "tags": []}),
        (
            Shape("line", [Point(0, 0), Point(1, 1, frozenset({"end"}))]),
            {"name": "line", "corners": [{"x": 0, "y": 0, "tags": []}, {"x": 1, "y": 1, "tags": ["end"]}]},
        ),
    ],
)
def test_common_values_encode_nested_and_returned_alone(value: Any, expected: Any) -> None:
    assert json.loads(json_dumps({"v": value})) == {"v": expected}
    app = H3()
    app.get("/", lambda event: value)
    res = TestClient(app).get("/")
    assert res.status == 200
    assert res.headers["content-type"] == "application/json"
    assert res.json() == expected


def test_a_set_of_several_items_is_an_array_of_them() -> None:
    app = H3()
    app.get("/", lambda event: {1, 2, 3})
    res = TestClient(app).get("/")
    assert (res.status, sorted(res.json())) == (200, [1, 2, 3])


def test_plain_values_stay_compact_utf8() -> None:
    assert json_dumps({"a": "é", "b": [1, 2.5, None, True]}) == '{"a":"é","b":[1,2.5,null,true]}'.encode()


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


def money_default(value: Any) -> Any:
    if isinstance(value, Money):
        return f"{value.cents / 100:.2f} EUR"
    raise TypeError(type(value).__name__)


def test_json_default_hook_encodes_the_apps_own_types() -> None:
    app = H3(json_default=money_default)

    @app.get("/price")
    def price(event: H3Event) -> Any:
        return {"price": Money(1250), "at": datetime.date(2026, 12, 2)}

    app.get("/alone", lambda event: Money(5))
    client = TestClient(app)
    assert client.get("/price").json() == {"price": "12.50 EUR", "at": "2026-12-02"}
    res = client.get("/alone")
    assert (res.status, res.headers["content-type"], res.json()) == (200, "application/json", "0.05 EUR")


def test_json_default_also_encodes_what_middleware_returns() -> None:
    app = H3(json_default=money_default)
    app.get("/", lambda event: "unused")
    app.use(lambda event, next: {"short": Money(1)})
    assert TestClient(app).get("/").json() == {"short": "0.01 EUR"}


def test_json_default_leaves_other_values_as_they_were() -> None:
    app = H3(json_default=money_default)
    app.get("/text", lambda event: "plain")
    app.get("/stream", lambda event: iter([b"a", "b"]))
    app.get("/response", lambda event: Response(b"raw", media_type="image/png"))
    client = TestClient(app)
    assert (client.get("/text").text, client.get("/text").headers["content-type"]) == (
        "plain",
        "text/plain; charset=utf-8",
    )
    assert client.get("/stream").body == b"ab"
    assert client.get("/response").headers["content-type"] == "image/png"


def test_json_default_must_be_callable() -> None:
    with pytest.raises(TypeError, match="json_default must be callable"):
        H3(json_default="nope")  # type: ignore[arg-type]


def test_hook_is_tried_first_and_may_override_a_builtin() -> None:
    dumps = make_json_dumps(
        lambda v: v.strftime("%d/%m/%Y") if isinstance(v, datetime.date) else money_default(v)
    )
    assert dumps([datetime.date(2026, 12, 2), ID]) == b'["02/12/2026","12345678-1234-5678-1234-567812345678"]'


class Opaque:
    pass


@pytest.mark.parametrize("json_default", [None, money_default])
def test_an_unsupported_value_is_a_500_whose_log_names_type_and_route(
    json_default: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = H3(json_default=json_default)

    @app.get("/things/:id")
    def thing(event: H3Event) -> Any:
        return {"thing": Opaque()}

    with caplog.at_level(logging.ERROR, logger="h3green"):
        res = TestClient(app).get("/things/7")
    assert res.status == 500
    assert "Opaque" not in res.text
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    line = record.getMessage()
    assert "GET /things/7" in line
    assert "route /things/:id" in line
    assert "test_json.Opaque as JSON" in line


def test_returning_an_opaque_object_names_its_type(caplog: pytest.LogCaptureFixture) -> None:
    app = H3()
    app.get("/", lambda event: object())
    with caplog.at_level(logging.ERROR, logger="h3green"):
        assert TestClient(app).get("/").status == 500
    assert any("cannot encode a object as JSON" in r.getMessage() for r in caplog.records)
