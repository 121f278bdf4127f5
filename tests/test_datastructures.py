"""Headers and QueryParams: multi-valued, ordered, Headers case-insensitive and checked."""

from __future__ import annotations

import pytest

from h3green import Headers, QueryParams
from h3green.datastructures import MultiDict


def test_headers_case_insensitive_multi_valued() -> None:
    h = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("Content-Type", "text/plain")])
    assert h["SET-COOKIE"] == "a=1"
    assert h.getall("Set-Cookie") == ["a=1", "b=2"]
    assert h.get("content-type") == "text/plain"
    assert h.get("missing") is None and h.get("missing", "d") == "d"
    assert "CONTENT-TYPE" in h and 42 not in h
    assert list(h) == ["set-cookie", "content-type"] == h.keys()
    assert len(h) == 2 and bool(h) and not Headers()
    assert h.items() == [("set-cookie", "a=1"), ("set-cookie", "b=2"), ("content-type", "text/plain")]
    assert h.to_dict() == {"set-cookie": "a=1", "content-type": "text/plain"}


def test_headers_set_delete_pop() -> None:
    h = Headers({"A": "1"})
    h.append("a", "2")
    h["A"] = "3"
    assert h.getall("a") == ["3"]
    h.set("b", 4)  # type: ignore[arg-type]  # values are stringified
    assert h["b"] == "4"
    assert h.pop("A") == "3" and "a" not in h
    assert h.pop("zz", "dflt") == "dflt"
    del h["B"]
    assert not h
    with pytest.raises(KeyError):
        del h["b"]
    with pytest.raises(KeyError):
        h["b"]


@pytest.mark.parametrize("name", ["", "a b", "a:b", "a\r", "a\nb", "a\x00", "a\tb"])
def test_invalid_header_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid header name"):
        Headers().append(name, "v")


@pytest.mark.parametrize("value", ["a\r\nb: c", "a\nb", "a\rb", "a\x00"])
def test_header_values_cannot_split_the_response(value: str) -> None:
    with pytest.raises(ValueError, match="contains CR, LF or NUL"):
        Headers({"x": value})


def test_headers_from_raw_and_equality() -> None:
    raw = Headers.from_raw([(b"x-a", b"\xe9")])
    assert raw["x-a"] == "é"
    assert raw == Headers({"X-A": "é"})
    assert raw != QueryParams([("x-a", "é")])
    assert raw != {"x-a": "é"}
    assert repr(raw) == "Headers([('x-a', 'é')])"
    with pytest.raises(TypeError):
        hash(raw)


def test_query_params_keep_case_order_and_blanks() -> None:
    q = QueryParams.parse("a=1&A=2&a=3&flag&sp=x+y&pct=%2F")
    assert q.getall("a") == ["1", "3"]
    assert q["A"] == "2"
    assert q["flag"] == ""
    assert q["sp"] == "x y" and q["pct"] == "/"
    assert QueryParams.parse("") == QueryParams()
    assert isinstance(q, MultiDict)
