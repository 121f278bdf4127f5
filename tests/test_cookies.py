"""Cookies through real framing: parsing the Cookie header, Set-Cookie attributes, misuse."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from h3green import H3, H3Event
from h3green.cookies import delete_cookie_header, parse_cookie_header, set_cookie_header
from h3green.testing import TestClient


def make_app() -> H3:
    app = H3()

    @app.get("/read")
    def read(event: H3Event) -> dict[str, object]:
        return {"all": event.cookies, "session": event.get_cookie("session", "none")}

    @app.post("/login")
    def login(event: H3Event) -> None:
        event.set_cookie("session", "abc123", httponly=True, secure=True, max_age=3600)
        event.set_cookie("theme", "dark", path="/app", samesite="strict")

    @app.post("/logout")
    def logout(event: H3Event) -> None:
        event.delete_cookie("session")

    return app


client = TestClient(make_app())


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a=1; b=2", {"a": "1", "b": "2"}),
        ("a=1;b=2", {"a": "1", "b": "2"}),
        ('quoted="x y"', {"quoted": "x y"}),
        ("a=1; a=2", {"a": "1"}),
        ("junk; =nameless; a=1; b", {"a": "1"}),
        ("token=a=b=c", {"token": "a=b=c"}),
        ("", {}),
    ],
)
def test_parse_is_lenient_like_browsers(header: str, expected: dict[str, str]) -> None:
    assert parse_cookie_header(header) == expected


def test_request_cookies_from_every_cookie_header() -> None:
    response = client.get("/read", headers=[("cookie", "session=s1; x=1"), ("cookie", "y=2")])
    assert response.json() == {"all": {"session": "s1", "x": "1", "y": "2"}, "session": "s1"}
    assert client.get("/read").json() == {"all": {}, "session": "none"}


def test_set_cookie_headers_with_attributes() -> None:
    response = client.post("/login")
    assert response.headers.getall("set-cookie") == [
        "session=abc123; Max-Age=3600; Path=/; SameSite=Lax; Secure; HttpOnly",
        "theme=dark; Path=/app; SameSite=Strict",
    ]


def test_delete_cookie_expires_it_now() -> None:
    response = client.post("/logout")
    assert response.headers["set-cookie"] == (
        "session=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/"
    )
    assert delete_cookie_header("x", path=None, domain="example.com") == (
        "x=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Domain=example.com"
    )


def test_expires_is_written_in_gmt() -> None:
    moment = datetime(2030, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    assert set_cookie_header("a", "b", expires=moment, samesite=None, partitioned=True, secure=True) == (
        "a=b; Expires=Mon, 06 May 2030 05:08:09 GMT; Path=/; Secure; Partitioned"
    )
    assert set_cookie_header("a", '"quoted"', path=None, samesite="none", secure=True) == (
        'a="quoted"; SameSite=None; Secure'
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name", "value": "v"}, "is not an HTTP token"),
        ({"name": "a", "value": "x;y"}, "has characters RFC 6265 does not allow"),
        ({"name": "a", "value": "x\r\nSet-Cookie: evil=1"}, "has characters RFC 6265 does not allow"),
        ({"name": "a", "value": "café"}, "encode it first"),
        ({"name": "a", "value": "v", "max_age": 1.5}, "max_age must be an int"),
        ({"name": "a", "value": "v", "expires": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"name": "a", "value": "v", "path": "/x;Domain=evil"}, "path '/x;Domain=evil' contains ';'"),
        ({"name": "a", "value": "v", "domain": "a\nb"}, "contains ';' or a control character"),
        ({"name": "a", "value": "v", "samesite": "sometimes"}, "samesite must be"),
        ({"name": "a", "value": "v", "samesite": "none"}, "requires secure=True"),
    ],
)
def test_invalid_cookies_raise_precise_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        set_cookie_header(**kwargs)  # type: ignore[arg-type]


def test_set_cookie_misuse_in_a_handler_is_a_logged_500_not_a_split_header() -> None:
    app = H3()

    @app.get("/")
    def handler(event: H3Event) -> str:
        event.set_cookie("a", "x\r\nX-Injected: 1")
        return "unreachable"

    response = TestClient(app).get("/")
    assert response.status == 500
    assert "x-injected" not in response.headers
