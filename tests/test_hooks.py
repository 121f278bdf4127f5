"""Hooks: on_request, on_response (may replace the response), on_error; failing hooks."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from h3green import H3, H3Event, HTTPError, Response
from h3green.testing import TestClient


def test_on_request_runs_before_routing_and_can_set_context() -> None:
    seen: list[str] = []

    def on_request(event: H3Event) -> None:
        seen.append(event.path)
        event.context["user"] = "ada"

    app = H3(on_request=on_request)
    app.get("/me", lambda e: {"user": e.context["user"]})
    client = TestClient(app)
    assert client.get("/me").json() == {"user": "ada"}
    assert client.get("/nowhere").status == 404
    assert seen == ["/me", "/nowhere"]


def test_on_request_sees_the_canonical_path() -> None:
    seen: list[str] = []
    app = H3(on_request=lambda e: seen.append(e.path))
    app.get("/admin", lambda e: "ok")
    TestClient(app).get("/x/../%61dmin")
    assert seen == ["/admin"]


def test_on_request_http_error_answers() -> None:
    def deny(event: H3Event) -> None:
        raise HTTPError(401, "login first", headers={"www-authenticate": "Bearer"})

    handled: list[str] = []
    app = H3(on_request=deny)
    app.get("/", lambda e: handled.append("no") or "no")  # type: ignore[func-returns-value]
    res = TestClient(app).get("/")
    assert res.status == 401
    assert res.headers["www-authenticate"] == "Bearer"
    assert res.json()["message"] == "login first"
    assert handled == []


def test_hooks_accept_lists_in_order() -> None:
    order: list[str] = []
    app = H3(
        on_request=[lambda e: order.append("req1"), lambda e: order.append("req2")],
        on_response=(lambda e, r: order.append("res1"), lambda e, r: order.append("res2")),
    )
    app.get("/", lambda e: order.append("handler"))
    TestClient(app).get("/")
    assert order == ["req1", "req2", "handler", "res1", "res2"]


def test_on_response_sees_and_may_replace_the_response() -> None:
    statuses: list[int] = []

    def on_response(event: H3Event, response: Response) -> Any:
        statuses.append(response.status)
        if event.path == "/replace":
            return Response({"replaced": True}, 203)
        response.headers.set("x-hooked", "yes")
        return "not a Response: ignored"

    app = H3(on_response=on_response)
    app.get("/keep", lambda e: "kept")
    app.get("/replace", lambda e: "original")
    client = TestClient(app)
    res = client.get("/keep")
    assert (res.text, res.headers["x-hooked"]) == ("kept", "yes")
    res = client.get("/replace")
    assert (res.status, res.json()) == (203, {"replaced": True})
    assert client.get("/missing").status == 404
    assert statuses == [200, 200, 404]


def test_on_error_gets_the_error_and_event() -> None:
    seen: list[tuple[type[BaseException], str]] = []
    app = H3(on_error=lambda error, event: seen.append((type(error), event.path)))
    app.get("/http", lambda e: (_ for _ in ()).throw(HTTPError(418)))
    app.get("/crash", lambda e: 1 / 0)
    app.get("/fine", lambda e: "fine")
    client = TestClient(app)
    assert client.get("/http").status == 418
    assert client.get("/crash").status == 500
    assert client.get("/fine").status == 200
    assert seen == [(HTTPError, "/http"), (ZeroDivisionError, "/crash")]


def test_failing_on_error_hook_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    def bad_hook(error: BaseException, event: H3Event) -> None:
        raise RuntimeError("hook broke")

    later: list[str] = []
    app = H3(on_error=[bad_hook, lambda error, event: later.append("second hook ran")])
    app.get("/", lambda e: (_ for _ in ()).throw(HTTPError(422, "bad")))
    with caplog.at_level(logging.ERROR, logger="h3green"):
        res = TestClient(app).get("/")
    assert (res.status, res.json()["message"]) == (422, "bad")
    assert later == ["second hook ran"]
    failures = [r for r in caplog.records if r.name == "h3green" and "on_error hook" in r.getMessage()]
    assert len(failures) == 1 and "hook broke" in (failures[0].exc_text or "")


def test_failing_on_response_hook_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    def bad_hook(event: H3Event, response: Response) -> None:
        raise ValueError("response hook broke")

    app = H3(on_response=[bad_hook, lambda e, r: Response("second hook")])
    app.get("/", lambda e: "handler")
    with caplog.at_level(logging.ERROR, logger="h3green"):
        res = TestClient(app).get("/")
    assert (res.status, res.text) == (200, "second hook")
    failures = [r for r in caplog.records if "on_response hook" in r.getMessage()]
    assert len(failures) == 1 and "response hook broke" in (failures[0].exc_text or "")


def test_crashing_on_request_hook_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    def crash(event: H3Event) -> None:
        raise KeyError("req hook")

    app = H3(on_request=crash)
    app.get("/", lambda e: "never")
    with caplog.at_level(logging.ERROR, logger="h3green"):
        res = TestClient(app).get("/")
    assert res.status == 500
    assert res.json()["unhandled"] is True
