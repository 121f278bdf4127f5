"""``app.use(middleware)``: short-circuit, wrap, continue, and the chain built once."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from h3green import H3, H3Event, HTTPError, Response
from h3green.testing import TestClient

Next = Any


def make_app() -> H3:
    app = H3()

    @app.get("/")
    def index(event: H3Event) -> dict[str, Any]:
        event.context.setdefault("trail", []).append("handler")
        return {"trail": event.context["trail"]}

    return app


def test_short_circuit_by_returning_a_value() -> None:
    app = make_app()
    calls: list[str] = []

    @app.use
    def guard(event: H3Event, next: Next) -> Any:
        calls.append("guard")
        if event.get_query("token") != "s3cret":
            return Response({"denied": True}, 401)
        return next()

    @app.use
    def never_for_denied(event: H3Event, next: Next) -> None:
        calls.append("second")

    client = TestClient(app)
    res = client.get("/")
    assert (res.status, res.json()) == (401, {"denied": True})
    assert calls == ["guard"]
    res = client.get("/?token=s3cret")
    assert res.status == 200
    assert calls == ["guard", "guard", "second"]


def test_short_circuit_with_a_plain_value() -> None:
    app = make_app()
    app.use(lambda event, next: "from middleware")
    res = TestClient(app).get("/")
    assert (res.status, res.text) == (200, "from middleware")


def test_code_after_next_sees_the_response() -> None:
    app = make_app()
    seen: list[Response] = []

    @app.use
    def timing(event: H3Event, next: Next) -> Response:
        response: Response = next()
        seen.append(response)
        assert isinstance(response, Response)
        response.headers.set("x-seen-status", str(response.status))
        return response

    res = TestClient(app).get("/")
    assert res.headers["x-seen-status"] == "200"
    assert seen[0].body == b'{"trail":["handler"]}'


def test_after_next_may_replace_the_response() -> None:
    app = make_app()
    app.use(lambda event, next: {"wrapped": next().status})
    assert TestClient(app).get("/").json() == {"wrapped": 200}


def test_order_is_onion_like() -> None:
    app = make_app()
    for name in ("outer", "inner"):

        def layer(event: H3Event, next: Next, name: str = name) -> None:
            event.context.setdefault("trail", []).append(f"{name}-in")
            next()
            event.context["trail"].append(f"{name}-out")

        app.use(layer)
    client = TestClient(app)
    # The handler's body was built before the outer layers' "out" steps ran.
    assert client.get("/").json() == {"trail": ["outer-in", "inner-in", "handler"]}


def test_returning_none_without_next_continues() -> None:
    app = make_app()
    ran: list[str] = []

    @app.use
    def observer(event: H3Event, next: Next) -> None:
        ran.append(event.path)
        event.context["trail"] = ["observer"]

    res = TestClient(app).get("/")
    assert res.json() == {"trail": ["observer", "handler"]}
    assert ran == ["/"]


def test_returning_none_after_next_uses_its_response() -> None:
    app = make_app()
    app.use(lambda event, next: next() and None)
    assert TestClient(app).get("/").json() == {"trail": ["handler"]}


def test_next_twice_raises() -> None:
    app = make_app()
    errors: list[BaseException] = []

    @app.use
    def twice(event: H3Event, next: Next) -> Any:
        next()
        try:
            next()
        except RuntimeError as exc:
            errors.append(exc)
            raise

    res = TestClient(app).get("/")
    assert res.status == 500
    assert str(errors[0]) == "next() may be called only once per middleware"


def test_middleware_may_replace_an_error_response_from_next() -> None:
    app = H3()

    @app.get("/")
    def fails(event: H3Event) -> None:
        raise HTTPError(409, "conflict")

    @app.use
    def soften(event: H3Event, next: Next) -> Any:
        response: Response = next()
        if response.status == 409:
            return Response("already there", 200)
        return response

    res = TestClient(app).get("/")
    assert (res.status, res.text) == (200, "already there")


def test_http_error_from_middleware() -> None:
    app = make_app()

    @app.use
    def deny(event: H3Event, next: Next) -> None:
        raise HTTPError(403, "no entry", data={"why": "test"}, headers={"x-denied": "1"})

    res = TestClient(app).get("/")
    assert res.status == 403
    assert res.headers["x-denied"] == "1"
    assert res.json() == {
        "status": 403,
        "statusText": "Forbidden",
        "message": "no entry",
        "data": {"why": "test"},
    }


def test_middleware_runs_for_404_and_405() -> None:
    app = make_app()
    statuses: list[int] = []

    @app.use
    def record(event: H3Event, next: Next) -> Response:
        response: Response = next()
        statuses.append(response.status)
        return response

    client = TestClient(app)
    assert client.get("/missing").status == 404
    assert client.post("/").status == 405
    assert statuses == [404, 405]


def cors_app(**options: Any) -> H3:
    """The usual CORS/request-id middleware over routes that fail every way they can."""
    app = H3(**options)

    @app.get("/ok")
    def ok(event: H3Event) -> str:
        return "fine"

    @app.get("/http-error")
    def http_error(event: H3Event) -> None:
        raise HTTPError(409, "conflict", headers={"x-from-error": "1"})

    @app.get("/crash")
    def crash(event: H3Event) -> None:
        raise RuntimeError("boom")

    @app.get("/staged")
    def staged(event: H3Event) -> None:
        event.set_header("x-request-id", "r-42")
        event.set_header("cache-control", "no-store")
        raise HTTPError(403, "no entry")

    @app.use
    def cors(event: H3Event, next: Next) -> Response:
        response: Response = next()
        response.headers.set("access-control-allow-origin", "*")
        return response

    return app


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/ok", 200),
        ("GET", "/missing", 404),
        ("POST", "/ok", 405),
        ("GET", "/http-error", 409),
        ("GET", "/crash", 500),
        ("GET", "/staged", 403),
    ],
)
def test_a_header_added_after_next_is_on_every_response(method: str, path: str, status: int) -> None:
    res = TestClient(cors_app()).request(method, path)
    assert res.status == status
    assert res.headers["access-control-allow-origin"] == "*"


def test_error_responses_keep_their_own_headers_and_body() -> None:
    client = TestClient(cors_app())
    res = client.post("/ok")
    assert res.headers["allow"] == "GET, HEAD, OPTIONS"
    res = client.get("/http-error")
    assert res.headers["x-from-error"] == "1"
    assert res.json()["message"] == "conflict"
    res = client.get("/crash")
    assert res.json() == {"status": 500, "unhandled": True, "message": "Internal Server Error"}


def test_headers_staged_before_an_error_stay_on_the_error_response() -> None:
    res = TestClient(cors_app()).get("/staged")
    assert res.status == 403
    assert res.headers["x-request-id"] == "r-42"
    assert res.headers["cache-control"] == "no-store"
    assert res.headers["access-control-allow-origin"] == "*"


def test_on_error_still_sees_each_exception_once(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[BaseException] = []
    client = TestClient(cors_app(on_error=lambda error, event: seen.append(error)))
    with caplog.at_level(logging.ERROR, logger="h3green"):
        client.get("/http-error")
        client.get("/crash")
        client.get("/missing")
    assert [type(e).__name__ for e in seen] == ["HTTPError", "RuntimeError", "HTTPError"]
    assert [getattr(e, "status", None) for e in seen] == [409, None, 404]
    crash_logs = [r for r in caplog.records if "RuntimeError" in r.getMessage()]
    assert len(crash_logs) == 1  # logged once, by the guard under the middleware


def test_every_layer_sees_the_error_response_of_a_failing_middleware() -> None:
    app = make_app()
    seen: list[int] = []

    @app.use
    def outer(event: H3Event, next: Next) -> Response:
        response: Response = next()
        seen.append(response.status)
        response.headers.set("x-outer", "1")
        return response

    @app.use
    def failing(event: H3Event, next: Next) -> None:
        raise HTTPError(401, "who are you")

    res = TestClient(app).get("/")
    assert (res.status, res.headers["x-outer"]) == (401, "1")
    assert seen == [401]


def test_error_after_start_sse_reaches_middleware_as_a_response() -> None:
    app = H3()

    @app.get("/events")
    def events(event: H3Event) -> None:
        event.start_sse()
        raise HTTPError(401, "log in first")

    @app.use
    def tag(event: H3Event, next: Next) -> Response:
        response: Response = next()
        response.headers.set("x-tag", "1")
        return response

    res = TestClient(app).get("/events")
    assert (res.status, res.headers["x-tag"]) == (401, "1")


def test_use_refuses_non_callable() -> None:
    with pytest.raises(TypeError, match="middleware must be callable, got 'nope'"):
        H3().use("nope")  # type: ignore[arg-type]


def test_use_returns_the_middleware() -> None:
    def mw(event: H3Event, next: Next) -> None:
        return None

    assert H3().use(mw) is mw


def test_chain_is_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    app.use(lambda event, next: None)
    freezes: list[int] = []
    original = H3.freeze

    def counting_freeze(self: H3) -> None:
        freezes.append(1)
        original(self)

    monkeypatch.setattr(H3, "freeze", counting_freeze)
    client = TestClient(app)
    for _ in range(3):
        assert client.get("/").status == 200
    assert len(freezes) == 1
    chain = app._chain
    assert client.get("/").status == 200
    assert app._chain is chain  # the same composed chain serves every request

    @app.use
    def late(event: H3Event, next: Next) -> str:
        return "late middleware"

    assert app._chain is None  # adding middleware drops the composed chain...
    assert client.get("/").text == "late middleware"  # ...and the next request rebuilds it
    assert len(freezes) == 2


def test_freeze_composes_eagerly() -> None:
    app = make_app()
    assert app._chain is None
    app.freeze()
    assert app._chain is not None
