"""Errors (point 6): HTTPError anywhere → its status and JSON body; anything else → a logged 500."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from http import HTTPStatus

import pytest

from h3green import H3, H3Event, HTTPError, errors
from h3green.testing import TestClient

UNHANDLED = {"status": 500, "unhandled": True, "message": "Internal Server Error"}


def test_http_error_defaults() -> None:
    exc = HTTPError()
    assert exc.status == 500
    assert exc.message == "Internal Server Error" == exc.status_text
    assert exc.headers == [] and exc.data is None
    assert str(exc) == "500 Internal Server Error"
    assert exc.to_json() == {
        "status": 500,
        "statusText": "Internal Server Error",
        "message": "Internal Server Error",
    }


def test_http_error_with_everything() -> None:
    exc = HTTPError(422, "invalid item", data={"field": "name"}, headers=[("x-a", "1"), ("x-a", "2")])
    assert exc.to_json() == {
        "status": 422,
        # Python's phrase: "Unprocessable Entity" to 3.12, RFC 9110's "Unprocessable Content" after.
        "statusText": HTTPStatus(422).phrase,
        "message": "invalid item",
        "data": {"field": "name"},
    }
    assert exc.headers == [("x-a", "1"), ("x-a", "2")]
    assert HTTPError(400, headers={"x": "y"}).headers == [("x", "y")]
    assert str(exc) == "422 invalid item"


def test_http_error_data_may_be_falsy_but_present() -> None:
    assert HTTPError(400, data=[]).to_json()["data"] == []
    assert HTTPError(400, data=0).to_json()["data"] == 0


def test_unnamed_status_has_empty_text() -> None:
    assert HTTPError(599).status_text == ""
    assert errors.status_text(404) == "Not Found"


@pytest.mark.parametrize("status", [200, 302, 399, 600, 99])
def test_http_error_refuses_non_error_status(status: int) -> None:
    with pytest.raises(ValueError, match=f"HTTPError status must be 4xx or 5xx, got {status}"):
        HTTPError(status)


def test_error_hierarchy() -> None:
    assert issubclass(HTTPError, errors.H3Error)
    for cls in (errors.WriterClosed, errors.ConnectionLost, errors.BackpressureDetected):
        assert issubclass(cls, errors.SSEError)
    for usage in (errors.SSEAlreadyStarted, errors.ResponseAlreadySent):
        assert issubclass(usage, errors.SSEError) and issubclass(usage, RuntimeError)


def test_http_error_from_handler_on_the_wire() -> None:
    app = H3()

    @app.get("/")
    def handler(event: H3Event) -> None:
        raise HTTPError(409, "already exists", data={"id": 3}, headers={"Retry-After": "5"})

    res = TestClient(app).get("/")
    assert res.status == 409
    assert res.headers["content-type"] == "application/json"
    assert res.headers["retry-after"] == "5"
    assert res.headers["content-length"] == str(len(res.body))
    assert res.json() == {
        "status": 409,
        "statusText": "Conflict",
        "message": "already exists",
        "data": {"id": 3},
    }


def test_http_error_from_body_reader() -> None:
    app = H3()
    app.post("/", lambda e: e.read_json())
    res = TestClient(app).post("/", data=b"{nope", headers={"content-type": "application/json"})
    assert res.status == 400
    assert res.json()["message"].startswith("invalid JSON in request body")


def test_unhandled_error_is_a_generic_500_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    app = H3()

    @app.get("/boom")
    def boom(event: H3Event) -> None:
        raise RuntimeError("secret detail 1234")

    with caplog.at_level(logging.DEBUG, logger="h3green"):
        res = TestClient(app).get("/boom?x=1")
    assert res.status == 500
    assert res.json() == UNHANDLED
    assert b"secret" not in res.body and b"Traceback" not in res.body
    logged = [r for r in caplog.records if r.exc_info and "secret detail 1234" in (r.exc_text or "")]
    assert len(logged) == 1
    assert logged[0].name == "h3green"
    assert logged[0].getMessage() == (
        "unhandled error in GET /boom?x=1 (route /boom): RuntimeError: secret detail 1234"
    )
    assert "RuntimeError" in (logged[0].exc_text or "")


def test_debug_puts_the_traceback_on_the_wire(caplog: pytest.LogCaptureFixture) -> None:
    app = H3(debug=True)
    app.get("/", lambda e: dict[str, int]()["missing"])
    with caplog.at_level(logging.CRITICAL, logger="h3green"):
        res = TestClient(app).get("/")
    body = res.json()
    assert body["status"] == 500 and body["unhandled"] is True
    assert any("KeyError: 'missing'" in line for line in body["stack"])


def test_staged_headers_reach_error_responses() -> None:
    app = H3()

    @app.get("/")
    def handler(event: H3Event) -> None:
        event.set_header("access-control-allow-origin", "*")
        event.set_status(201)
        raise HTTPError(403)

    res = TestClient(app).get("/")
    assert res.status == 403  # the error's status, not the staged one
    assert res.headers["access-control-allow-origin"] == "*"


def test_http_error_in_a_stream_before_its_first_piece() -> None:
    def gen() -> Iterator[bytes]:
        raise HTTPError(404, "gone", headers={"x-why": "stream"})
        yield b""  # pragma: no cover

    app = H3()
    app.get("/", lambda e: gen())
    # A streamed body is pulled by the server after the app returned; an HTTPError raised
    # before the first piece still answers with its own status, not a truncated 200.
    res = TestClient(app).get("/")
    assert res.status == 404
    assert res.headers["x-why"] == "stream"
    assert json.loads(res.body) == {"status": 404, "statusText": "Not Found", "message": "gone"}
