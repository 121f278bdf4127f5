"""Basic auth: header parsing, colons in passwords, non-ASCII names, the 401 challenge."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from conftest import ServeApp
from helpers import RawClient

from h3green import H3, H3Event, Headers, HTTPError
from h3green.testing import TestClient
from h3green.utils import basic_auth, require_basic_auth


def basic(user: str, password: str, encoding: str = "utf-8", scheme: str = "Basic") -> str:
    return f"{scheme} " + base64.b64encode(f"{user}:{password}".encode(encoding)).decode()


def event_with(authorization: str | None) -> H3Event:
    headers = Headers([("authorization", authorization)] if authorization is not None else [])
    return H3Event("GET", "/", headers)


def test_the_right_credentials_pass_and_are_recorded() -> None:
    event = event_with(basic("admin", "s3cret"))
    assert require_basic_auth(event, username="admin", password="s3cret", realm="admin area") == "admin"
    assert event.context["basic_auth"] == {"username": "admin", "realm": "admin area"}


@pytest.mark.parametrize(
    "authorization",
    [
        basic("admin", "s3cret", scheme="basic"),
        basic("admin", "s3cret", scheme="BASIC"),
        basic("admin", "s3cret").replace(" ", "   "),
    ],
)
def test_the_scheme_is_case_insensitive(authorization: str) -> None:
    assert require_basic_auth(event_with(authorization), username="admin", password="s3cret") == "admin"


def test_a_password_may_contain_colons_the_split_is_at_the_first() -> None:
    event = event_with(basic("ops", "a:b::c:"))
    assert require_basic_auth(event, username="ops", password="a:b::c:") == "ops"
    with pytest.raises(HTTPError):
        require_basic_auth(event_with(basic("ops:a", "b::c:")), username="ops:a", password="b::c:")


def test_non_ascii_names_in_utf8_and_latin1() -> None:
    assert (
        require_basic_auth(event_with(basic("Zoë", "pässwörd")), username="Zoë", password="pässwörd") == "Zoë"
    )
    latin1 = event_with(basic("José", "ñandú", encoding="latin-1"))
    assert require_basic_auth(latin1, username="José", password="ñandú") == "José"
    assert require_basic_auth(event_with(basic("用户", "密码")), username="用户", password="密码") == "用户"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        basic("admin", "wrong"),
        basic("other", "s3cret"),
        basic("admin", "s3cret", scheme="Bearer"),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic",
    ],
)
def test_anything_else_is_a_401_with_the_challenge(authorization: str | None) -> None:
    with pytest.raises(HTTPError) as info:
        require_basic_auth(event_with(authorization), username="admin", password="s3cret", realm="ops")
    assert info.value.status == 401
    assert info.value.headers == [("www-authenticate", 'Basic realm="ops", charset="UTF-8"')]
    assert "basic_auth" not in event_with(authorization).context


def test_validate_decides_and_any_user_when_no_username_is_set() -> None:
    users = {"ada": "lovelace", "alan": "turing"}

    def check(user: str, password: str) -> bool:
        return users.get(user) == password

    assert require_basic_auth(event_with(basic("alan", "turing")), validate=check) == "alan"
    with pytest.raises(HTTPError):
        require_basic_auth(event_with(basic("alan", "lovelace")), validate=check)
    assert require_basic_auth(event_with(basic("anyone", "pw")), password="pw") == "anyone"
    # Both a password and validate: both must agree.
    with pytest.raises(HTTPError):
        require_basic_auth(event_with(basic("ada", "pw")), password="pw", validate=check)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({}, ValueError, "needs a password or a validate"),
        ({"username": "admin"}, ValueError, "needs a password or a validate"),
        ({"validate": "yes"}, TypeError, "validate must be callable"),
        ({"password": "pw", "realm": 'a"b'}, ValueError, "realm may not contain"),
        ({"password": "pw", "realm": "a\r\nb"}, ValueError, "realm may not contain"),
    ],
)
def test_an_open_door_or_bad_realm_is_refused_at_setup(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        basic_auth(**options)
    with pytest.raises(error, match=message):
        require_basic_auth(event_with(basic("a", "b")), **options)


def make_app() -> H3:
    app = H3()
    admin = H3()
    admin.use(basic_auth(username="admin", password="pa:ss", realm="admin"))

    @admin.get("/")
    def dashboard(event: H3Event) -> dict[str, Any]:
        return {"hello": event.context["basic_auth"]["username"]}

    app.mount("/admin", admin)

    @app.get("/report")
    def report(event: H3Event) -> str:
        user = require_basic_auth(event, validate=lambda u, p: (u, p) == ("Zoë", "x"))
        return f"report for {user}"

    app.get("/", lambda event: "public")
    return app


def test_middleware_and_handler_through_the_test_client() -> None:
    client = TestClient(make_app())
    assert client.get("/").text == "public"
    denied = client.get("/admin")
    assert denied.status == 401
    assert denied.headers["www-authenticate"] == 'Basic realm="admin", charset="UTF-8"'
    assert denied.json() == {
        "status": 401,
        "statusText": "Unauthorized",
        "message": "Authentication required",
    }
    allowed = client.get("/admin", headers={"authorization": basic("admin", "pa:ss")})
    assert allowed.json() == {"hello": "admin"}
    assert client.get("/report", headers={"authorization": basic("Zoë", "x")}).text == "report for Zoë"


@pytest.mark.live
def test_basic_auth_over_a_real_socket(serve_app: ServeApp) -> None:
    server = serve_app(make_app())
    client = RawClient(server.address)
    try:
        status, headers, _ = client.fetch("GET", "/admin")
        assert status == 401 and headers["www-authenticate"].startswith('Basic realm="admin"')
        status, _, body = client.fetch("GET", "/admin", headers=[("authorization", basic("admin", "pa:ss"))])
        assert status == 200 and body == b'{"hello":"admin"}'
    finally:
        client.close()
