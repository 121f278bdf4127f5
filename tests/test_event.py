"""H3Event, request side (point 7): method, path, url, query, params, headers, remote_addr,
context, http_version, and the staged response API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from h3green import H3, H3Event, ResponseAlreadySent
from h3green.datastructures import Headers
from h3green.testing import TestClient


def inspect(event: H3Event) -> dict[str, Any]:
    return {
        "method": event.method,
        "path": event.path,
        "target": event.target,
        "url": event.url,
        "query": event.query.items(),
        "tags": event.query.getall("tag"),
        "first_tag": event.get_query("tag"),
        "missing": event.get_query("nope", "dflt"),
        "params": event.params,
        "accept": event.headers.getall("ACCEPT"),
        "agent": event.headers["User-Agent"],
        "remote_addr": event.remote_addr,
        "http_version": event.http_version,
        "scheme": event.scheme,
    }


def test_request_view_through_the_client() -> None:
    app = H3()
    app.get("/users/:id", inspect)
    client = TestClient(app, remote_addr="10.1.2.3")
    res = client.get(
        "/users/42?tag=a&tag=b&empty=&plus=a+b&enc=%C3%A9",
        headers=[("Accept", "text/html"), ("accept", "application/json"), ("User-Agent", "t/1")],
    )
    body = res.json()
    assert body["method"] == "GET"
    assert body["path"] == "/users/42"
    assert body["target"] == "/users/42?tag=a&tag=b&empty=&plus=a+b&enc=%C3%A9"
    assert body["url"] == "http://testserver/users/42?tag=a&tag=b&empty=&plus=a+b&enc=%C3%A9"
    assert body["query"] == [["tag", "a"], ["tag", "b"], ["empty", ""], ["plus", "a b"], ["enc", "é"]]
    assert body["tags"] == ["a", "b"]
    assert body["first_tag"] == "a"
    assert body["missing"] == "dflt"
    assert body["params"] == {"id": "42"}
    assert body["accept"] == ["text/html", "application/json"]
    assert body["agent"] == "t/1"
    assert body["remote_addr"] == "10.1.2.3"
    assert body["http_version"] == "1.1"
    assert body["scheme"] == "http"


def test_params_query_via_client_params() -> None:
    app = H3()
    app.get("/", lambda e: e.query.to_dict())
    assert TestClient(app).get("/?a=1", params={"b": ["2", "3"]}).json() == {"a": "1", "b": "2"}


def test_http_10_request_is_seen_as_such() -> None:
    app = H3()
    app.get("/", lambda e: e.http_version)
    res = TestClient(app).get("/", http_version="1.0")
    assert res.text == "1.0"
    assert res.headers["connection"] == "close"  # no keep-alive for an HTTP/1.0 client


def test_context_is_per_request() -> None:
    app = H3()

    @app.get("/")
    def handler(event: H3Event) -> int:
        event.context["n"] = event.context.get("n", 0) + 1
        return int(event.context["n"])

    client = TestClient(app)
    assert client.get("/").json() == 1
    assert client.get("/").json() == 1


def test_event_defaults_without_a_server() -> None:
    event = H3Event("GET", "/p?x=1", Headers())
    assert event.path == "/p" and event.query_string == "x=1"
    assert event.host == "localhost"
    assert event.url == "http://localhost/p?x=1"
    assert event.remote_addr is None
    assert event.read_body() == b""
    assert repr(event) == "<H3Event GET /p?x=1>"
    assert H3Event("GET", "/raw", Headers(), path="/given").path == "/given"
    assert event.query is event.query  # parsed once


def test_set_status_and_headers_are_staged() -> None:
    event = H3Event("GET", "/", Headers())
    event.set_status(201)
    event.set_header("X-A", "1")
    event.set_header("x-a", "2")
    event.append_header("Vary", "Accept")
    event.append_header("vary", "Origin")
    assert event.res.status == 201
    assert event.res.headers.items() == [("x-a", "2"), ("vary", "Accept"), ("vary", "Origin")]
    with pytest.raises(ValueError, match="invalid status code 100"):
        event.set_status(100)
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        event.set_header("x-b", "evil\r\nset-cookie: a=1")


def test_res_status_is_checked_like_set_status() -> None:
    event = H3Event("GET", "/", Headers())
    event.res.status = 418
    assert event.res.status == 418
    for bad in (100, 199, 1000):
        with pytest.raises(ValueError, match=f"invalid status code {bad}"):
            event.res.status = bad
    assert event.res.status == 418  # a refused value leaves the staged one
    event.res.status = None  # back to "the return value's, or 200"
    assert event.res.status is None


def test_sse_settings_are_readable() -> None:
    event = H3Event("GET", "/events", Headers())
    assert (event.stream_callback, event.sse_heartbeat) == (None, None)

    def callback(writer: object) -> None:
        pass

    event.start_sse(heartbeat=2.5)
    event.set_stream_callback(callback)
    assert (event.stream_callback, event.sse_heartbeat) == (callback, 2.5)


def test_close_form_closes_what_read_form_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from h3green.utils.multipart import FormData

    event = H3Event("GET", "/", Headers())
    event.close_form()  # nothing read: nothing to close
    body = b"a=1"
    event = H3Event(
        "POST",
        "/",
        Headers([("content-type", "application/x-www-form-urlencoded"), ("content-length", "3")]),
        body=_OneShot(body),
    )
    closed: list[FormData] = []
    monkeypatch.setattr(FormData, "close", lambda form: closed.append(form))  # noqa: PLW0108 - a plain function, so it binds as a method
    form = event.read_form()
    assert form["a"] == "1"
    event.close_form()
    assert closed == [form]


class _OneShot:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        data, self._data = self._data, b""
        return data


def test_staged_changes_after_the_head_was_sent_raise() -> None:
    event = H3Event("GET", "/", Headers())
    event.mark_head_sent()
    calls: list[Callable[[], None]] = [
        lambda: event.set_header("x", "1"),
        lambda: event.append_header("x", "1"),
        lambda: event.set_status(200),
    ]
    for call in calls:
        with pytest.raises(ResponseAlreadySent, match="the response head was already sent"):
            call()


def test_headers_are_case_insensitive_on_the_wire() -> None:
    app = H3()
    app.get("/", lambda e: [e.headers.get("x-Custom"), "x-custom" in e.headers, e.headers.get("absent")])
    assert TestClient(app).get("/", headers={"X-CUSTOM": "v"}).json() == ["v", True, None]


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("http://example.org/users/1?x=1", "/users/1", "x=1"),
        ("http://example.org", "/", ""),
        ("https://example.org:8443/a/b/", "/a/b/", ""),
        ("http://example.org?q=1", "/", "q=1"),
    ],
)
def test_absolute_form_targets(target: str, path: str, query: str) -> None:
    event = H3Event("GET", target, Headers())
    assert (event.path, event.query_string, event.target) == (path, query, target)


def test_absolute_form_routes_over_the_wire() -> None:
    app = H3()
    app.get("/users/:id", lambda e: [e.params["id"], e.get_query("x")])
    res = TestClient(app).get("http://example.org/users/1?x=2")
    assert res.json() == ["1", "2"]
