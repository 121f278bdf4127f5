"""CORS: the middleware and ``handle_cors``, preflights from allowed and refused origins,
``Vary``, credentials, and error responses that keep their CORS headers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import ServeApp
from helpers import RawClient

from h3green import H3, H3Event, HTTPError
from h3green.testing import TestClient, TestResponse
from h3green.utils import CORSOptions, StaticFiles, cors, handle_cors

GOOD = "https://app.example"
EVIL = "https://evil.example"
PREFLIGHT = {"origin": GOOD, "access-control-request-method": "PUT"}


def make_app(**options: Any) -> H3:
    app = H3()
    app.use(cors(**options))
    app.get("/data", lambda e: {"ok": True})
    app.put("/data", lambda e: {"put": True})

    @app.get("/fail")
    def fail(event: H3Event) -> object:
        raise HTTPError(409, "conflict")

    @app.get("/crash")
    def crash(event: H3Event) -> object:
        raise RuntimeError("boom")

    return app


def allow_headers(response: TestResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


# -- simple and actual requests --------------------------------------------------------------


def test_star_origin_allows_any_without_vary() -> None:
    response = TestClient(make_app()).get("/data", headers={"origin": EVIL})
    assert response.json() == {"ok": True}
    assert response.headers["access-control-allow-origin"] == "*"
    assert "vary" not in response.headers
    assert "access-control-allow-credentials" not in response.headers


def test_exact_origin_is_reflected_and_others_get_nothing() -> None:
    client = TestClient(make_app(origin=GOOD, expose_headers=["x-total", "x-page"]))
    allowed = client.get("/data", headers={"origin": GOOD})
    assert allowed.headers["access-control-allow-origin"] == GOOD
    assert allowed.headers["access-control-expose-headers"] == "x-total, x-page"
    assert allowed.headers["vary"] == "Origin"
    refused = client.get("/data", headers={"origin": EVIL})
    assert refused.status == 200  # the server answers; the browser withholds it
    assert allow_headers(refused) == {}
    assert refused.headers["vary"] == "Origin"
    # No Origin at all: not a CORS request, but a cache must still key on Origin.
    plain = client.get("/data")
    assert allow_headers(plain) == {} and plain.headers["vary"] == "Origin"


@pytest.mark.parametrize(
    ("spec", "origin", "allowed"),
    [
        ([GOOD, "https://other.example"], "https://other.example", True),
        ([GOOD], EVIL, False),
        ([re.compile(r"https://[a-z]+\.example")], EVIL, True),
        # Anchored: a pattern never matches a prefix or a suffix of the origin.
        ([re.compile(r"https://app\.example")], "https://app.example.evil.com", False),
        ([re.compile(r"app\.example")], GOOD, False),
        (re.compile(r"https://app\.example"), GOOD, True),
        (lambda origin: origin.endswith(".example"), EVIL, True),
        (lambda origin: False, GOOD, False),
        (GOOD, GOOD + ".evil", False),
    ],
)
def test_origin_specs(spec: Any, origin: str, allowed: bool) -> None:
    response = TestClient(make_app(origin=spec)).get("/data", headers={"origin": origin})
    assert response.headers.get("access-control-allow-origin") == (origin if allowed else None)
    assert response.headers["vary"] == "Origin"


def test_credentials_reflect_the_allowed_origin() -> None:
    client = TestClient(make_app(origin=[GOOD], credentials=True))
    response = client.get("/data", headers={"origin": GOOD})
    assert response.headers["access-control-allow-origin"] == GOOD
    assert response.headers["access-control-allow-credentials"] == "true"
    refused = client.get("/data", headers={"origin": EVIL})
    assert allow_headers(refused) == {}


def test_credentials_with_star_are_refused_at_setup() -> None:
    with pytest.raises(ValueError, match="credentials=True cannot be combined"):
        cors(credentials=True)
    with pytest.raises(ValueError, match="credentials=True cannot be combined"):
        handle_cors(H3Event("GET", "/", __import__("h3green").Headers()), credentials=True)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"origin": ["*"]}, ValueError, "on its own"),
        ({"origin": [1]}, TypeError, "compiled patterns"),
        ({"origin": "bad\norigin"}, ValueError, "invalid origin"),
        ({"methods": ["GET", ""]}, ValueError, "invalid method"),
        ({"allow_headers": ["x\r\n"]}, ValueError, "invalid header"),
        ({"max_age": -1}, ValueError, "max_age"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        cors(**options)


# -- preflights --------------------------------------------------------------------------------


def test_preflight_from_an_allowed_origin() -> None:
    client = TestClient(
        make_app(origin=[GOOD], methods=["GET", "PUT"], allow_headers="content-type", max_age=600)
    )
    response = client.options(
        "/data", headers={**PREFLIGHT, "access-control-request-headers": "content-type"}
    )
    assert response.status == 204
    assert response.body == b""
    assert allow_headers(response) == {
        "access-control-allow-origin": GOOD,
        "access-control-allow-methods": "GET, PUT",
        "access-control-allow-headers": "content-type",
        "access-control-max-age": "600",
    }
    assert response.headers["vary"] == "Origin"


def test_preflight_from_a_refused_origin_gets_no_allow_headers() -> None:
    client = TestClient(make_app(origin=[GOOD], max_age=600))
    response = client.options("/data", headers={**PREFLIGHT, "origin": EVIL})
    assert response.status == 204
    assert allow_headers(response) == {}
    assert response.headers["vary"] == "Origin"


def test_preflight_star_defaults() -> None:
    response = TestClient(make_app()).options("/anything", headers=PREFLIGHT)
    assert response.status == 204  # answered before routing: no route needed
    assert allow_headers(response) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "*",
        "access-control-allow-headers": "*",
    }


def test_preflight_with_credentials_names_what_was_asked() -> None:
    client = TestClient(make_app(origin=[GOOD], credentials=True))
    response = client.options("/data", headers={**PREFLIGHT, "access-control-request-headers": "x-token"})
    assert response.headers["access-control-allow-methods"] == "PUT"
    assert response.headers["access-control-allow-headers"] == "x-token"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["vary"] == "Origin, Access-Control-Request-Headers"
    bare = client.options("/data", headers=PREFLIGHT)
    assert "access-control-allow-headers" not in bare.headers


def test_options_without_request_method_is_not_a_preflight() -> None:
    response = TestClient(make_app()).options("/data", headers={"origin": GOOD})
    assert response.status == 204
    assert response.headers["allow"] == "GET, HEAD, OPTIONS, PUT"  # the router's answer
    assert response.headers["access-control-allow-origin"] == "*"


# -- errors keep their CORS headers ----------------------------------------------------------------


@pytest.mark.parametrize(("path", "status"), [("/fail", 409), ("/crash", 500), ("/missing", 404)])
def test_error_responses_keep_cors_headers(path: str, status: int, caplog: pytest.LogCaptureFixture) -> None:
    response = TestClient(make_app(origin=[GOOD], credentials=True)).get(path, headers={"origin": GOOD})
    assert response.status == status
    assert response.json()["status"] == status
    assert response.headers["access-control-allow-origin"] == GOOD
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["vary"] == "Origin"


def test_vary_merges_with_the_response_vary(tmp_path: Any) -> None:
    (tmp_path / "a.js").write_text("1")
    app = H3()
    app.use(cors(origin=[GOOD]))
    app.mount("/s", StaticFiles(tmp_path))
    response = TestClient(app).get("/s/a.js", headers={"origin": GOOD})
    assert response.headers["vary"] == "Accept-Encoding, Origin"
    assert response.headers["access-control-allow-origin"] == GOOD


def test_vary_star_and_duplicates_are_left_alone() -> None:
    from h3green import Headers
    from h3green.utils.cors import _add_vary

    headers = Headers({"vary": "*"})
    _add_vary(headers, "Origin")
    assert headers.getall("vary") == ["*"]
    headers = Headers([("vary", "origin, Accept"), ("vary", "Cookie")])
    _add_vary(headers, "Origin")
    assert headers.getall("vary") == ["origin, Accept", "Cookie"]


# -- handle_cors in one route -------------------------------------------------------------------


def test_handle_cors_in_a_route() -> None:
    app = H3()
    options = CORSOptions(origin=[GOOD], max_age=60)

    @app.all("/one")
    def one(event: H3Event) -> object:
        if handle_cors(event, options):
            return None
        return {"one": True}

    app.get("/other", lambda e: {"other": True})
    client = TestClient(app)
    preflight = client.options("/one", headers=PREFLIGHT)
    assert preflight.status == 204
    assert preflight.headers["access-control-max-age"] == "60"
    response = client.get("/one", headers={"origin": GOOD})
    assert response.json() == {"one": True}
    assert response.headers["access-control-allow-origin"] == GOOD
    other = client.get("/other", headers={"origin": GOOD})
    assert allow_headers(other) == {}
    with pytest.raises(TypeError, match="either"):
        handle_cors(H3Event("GET", "/", __import__("h3green").Headers()), options, origin="*")


def test_handle_cors_with_settings() -> None:
    app = H3()
    app.get("/x", lambda e: handle_cors(e, origin=GOOD) or "x")
    response = TestClient(app).get("/x", headers={"origin": GOOD})
    assert response.text == "x" and response.headers["access-control-allow-origin"] == GOOD


# -- over a real socket ------------------------------------------------------------------------------


@pytest.mark.live
def test_preflight_and_request_over_a_real_socket(serve_app: ServeApp) -> None:
    server = serve_app(make_app(origin=[GOOD], methods=["GET", "PUT"], max_age=5))
    client = RawClient(server.address)
    try:
        status, headers, body = client.fetch("OPTIONS", "/data", headers=list(PREFLIGHT.items()))
        assert status == 204 and body == b""
        assert headers["access-control-allow-origin"] == GOOD
        assert headers["access-control-allow-methods"] == "GET, PUT"
        status, headers, body = client.fetch("PUT", "/data", headers=[("origin", GOOD)])
        assert status == 200 and body == b'{"put":true}'
        assert headers["access-control-allow-origin"] == GOOD
        status, headers, _ = client.fetch(
            "OPTIONS", "/data", headers=list({**PREFLIGHT, "origin": EVIL}.items())
        )
        assert status == 204 and "access-control-allow-origin" not in headers
    finally:
        client.close()
