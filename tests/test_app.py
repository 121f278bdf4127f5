"""The H3 app: route registration and routing behaviour seen through HTTP (points 3 and 4)."""

from __future__ import annotations

from typing import Any

import pytest

from h3green import H3, H3Event, Response
from h3green.testing import TestClient

METHODS = ["get", "post", "put", "patch", "delete", "options"]


def echo(event: H3Event) -> dict[str, Any]:
    return {"method": event.method, "path": event.path, "params": event.params}


@pytest.mark.parametrize("name", METHODS)
def test_method_helpers_as_decorators(name: str) -> None:
    app = H3()

    def handler(event: H3Event) -> str:
        return f"{event.method} via decorator"

    decorated = getattr(app, name)("/x")(handler)
    assert decorated is handler  # the decorator hands the function back unchanged
    res = TestClient(app).request(name.upper(), "/x")
    assert res.status == 200
    assert res.text == f"{name.upper()} via decorator"


@pytest.mark.parametrize("name", METHODS)
def test_method_helpers_as_direct_calls(name: str) -> None:
    app = H3()
    assert getattr(app, name)("/y", echo) is echo
    res = TestClient(app).request(name.upper(), "/y")
    assert res.json()["method"] == name.upper()


def test_head_helper_overrides_the_get_fallback() -> None:
    app = H3()
    app.get("/", lambda e: "get body")
    app.head("/", lambda e: Response(None, 200, {"x-head": "own"}))
    res = TestClient(app).head("/")
    assert res.headers["x-head"] == "own"


def test_all_answers_every_method() -> None:
    app = H3()

    @app.all("/any")
    def any_method(event: H3Event) -> str:
        return event.method

    client = TestClient(app)
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"]:
        assert client.request(method, "/any").text == method


def test_on_with_any_method_name() -> None:
    app = H3()
    app.on("purge", "/cache", lambda e: "purged")

    @app.on("REPORT", "/r")
    def report(event: H3Event) -> str:
        return "report"

    app.on("m-search", "/", lambda e: e.method)
    client = TestClient(app)
    assert client.request("M-SEARCH", "/").text == "M-SEARCH"
    assert client.request("PURGE", "/cache").text == "purged"
    assert client.request("REPORT", "/r").text == "report"
    assert client.get("/cache").status == 405


@pytest.mark.parametrize("method", ["GE T", "", "GET\r\n", "G(T", "GET/1", "GÉT"])
def test_on_refuses_invalid_method(method: str) -> None:
    with pytest.raises(ValueError, match="invalid HTTP method"):
        H3().on(method, "/", echo)


def test_on_refuses_non_callable_handler() -> None:
    with pytest.raises(TypeError, match="handler for GET /x must be callable, got 42"):
        H3().get("/x", 42)  # type: ignore[call-overload]


def test_repr_counts_routes_and_middleware() -> None:
    app = H3()
    app.get("/a", echo)
    app.post("/a", echo)
    app.use(lambda event, next: None)
    assert repr(app) == "<H3 routes=2 middleware=1>"


# -- routing through the app ---------------------------------------------------------------


@pytest.fixture
def routed() -> TestClient:
    app = H3()
    app.get("/users", lambda e: "list")
    app.get("/users/me", lambda e: "static me")
    app.get("/users/:id", lambda e: {"param": e.params["id"]})
    app.get("/users/:id/posts/:post", lambda e: e.params)
    app.get("/files/*", lambda e: {"one": e.params})
    app.get("/files/*/raw", lambda e: "raw")
    app.get("/assets/**", lambda e: {"rest": e.params})
    app.get("/docs/**:slug", lambda e: e.params)
    app.get("/admin", lambda e: "admin area")
    app.post("/items", lambda e: "created")
    app.put("/items", lambda e: "replaced")
    return TestClient(app)


def test_static_param_and_precedence(routed: TestClient) -> None:
    assert routed.get("/users").text == "list"
    assert routed.get("/users/me").text == "static me"  # static beats :param
    assert routed.get("/users/42").json() == {"param": "42"}
    assert routed.get("/users/7/posts/9").json() == {"id": "7", "post": "9"}


def test_wildcards(routed: TestClient) -> None:
    assert routed.get("/files/a").status == 200
    assert routed.get("/files/a/raw").text == "raw"
    assert routed.get("/files/a/b").status == 404  # * is exactly one segment
    rest = routed.get("/assets/css/site/main.css").json()["rest"]
    assert "css/site/main.css" in rest.values()
    assert routed.get("/docs/guide/intro").json() == {"slug": "guide/intro"}


def test_params_are_decoded(routed: TestClient) -> None:
    assert routed.get("/users/j%C3%BCrgen").json() == {"param": "jürgen"}


def test_trailing_slash_matches_the_same_route(routed: TestClient) -> None:
    assert routed.get("/users/").text == "list"
    assert routed.get("/users/42/").json() == {"param": "42"}


@pytest.mark.parametrize(
    "target",
    [
        "/%61dmin",
        "/%61%64%6d%69%6e",
        "/x/../admin",
        "/../../admin",
        "//admin",
        "/./admin",
        "/users/%2e%2e/admin",
    ],
)
def test_canonical_path_reaches_the_route(routed: TestClient, target: str) -> None:
    res = routed.get(target)
    assert (res.status, res.text) == (200, "admin area")


@pytest.mark.parametrize("target", ["/%zz", "/users/%4", "/a%", "/%00", "/%ff"])
def test_malformed_path_is_a_400(routed: TestClient, target: str) -> None:
    res = routed.get(target)
    assert res.status == 400
    body = res.json()
    assert body["status"] == 400 and body["statusText"] == "Bad Request"
    assert body["message"]


def test_query_string_does_not_affect_routing(routed: TestClient) -> None:
    assert routed.get("/users/5?x=/admin").json() == {"param": "5"}


def test_head_falls_back_to_get(routed: TestClient) -> None:
    res = routed.head("/users/me")
    assert res.status == 200
    assert res.body == b""
    assert res.headers["content-length"] == str(len("static me"))


def test_405_with_allow(routed: TestClient) -> None:
    res = routed.delete("/items")
    assert res.status == 405
    assert res.headers["allow"] == "OPTIONS, POST, PUT"
    assert res.json()["message"] == "Method DELETE is not allowed"
    res = routed.post("/users/1")
    assert res.status == 405
    assert res.headers["allow"] == "GET, HEAD, OPTIONS"


def test_options_without_route_is_204_with_allow(routed: TestClient) -> None:
    res = routed.options("/items")
    assert res.status == 204
    assert res.headers["allow"] == "OPTIONS, POST, PUT"
    assert res.body == b""


def test_no_route_is_404(routed: TestClient) -> None:
    res = routed.get("/nowhere")
    assert res.status == 404
    assert res.json() == {
        "status": 404,
        "statusText": "Not Found",
        "message": "Cannot find any route matching /nowhere",
    }
    assert routed.options("/nowhere").status == 404


def test_a_pattern_that_exists_for_another_method_only() -> None:
    app = H3()
    app.post("/things/:id", echo)
    res = TestClient(app).get("/things/1")
    assert (res.status, res.headers["allow"]) == (405, "OPTIONS, POST")


def test_options_asterisk_describes_the_server() -> None:
    app = H3()
    app.get("/a", echo)
    app.post("/b", echo)
    app.all("/c", echo)
    res = TestClient(app).options("*")
    assert (res.status, res.body) == (204, b"")
    assert res.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    post_only = H3()
    post_only.post("/b", echo)
    assert TestClient(post_only).options("*").headers["allow"] == "OPTIONS, POST"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_asterisk_target_for_other_methods_is_a_400(method: str) -> None:
    app = H3()
    app.all("/x", echo)
    res = TestClient(app).request(method, "*")
    assert res.status == 400
    assert res.json()["message"] == "path must start with '/'"
