"""Return values → responses (issue point 5), through real HTTP/1.1 framing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import h11
import pytest

from h3green import H3, H3Event, Response, html, no_content, redirect
from h3green.datastructures import Headers
from h3green.response import SSEResponse, json_dumps, merge_staged, to_response
from h3green.testing import TestClient


def serve_value(value: Any, method: str = "GET", **kwargs: Any) -> Any:
    app = H3()
    app.on("*", "/", lambda event: value)
    return TestClient(app).request(method, "/", **kwargs)


def test_str_is_utf8_text() -> None:
    res = serve_value("héllo")
    assert res.status == 200
    assert res.headers["content-type"] == "text/plain; charset=utf-8"
    assert res.body == "héllo".encode()
    assert res.headers["content-length"] == str(len("héllo".encode()))
    assert "transfer-encoding" not in res.headers


@pytest.mark.parametrize("value", [b"\x00\x01", bytearray(b"\x00\x01"), memoryview(b"\x00\x01")])
def test_bytes_like_is_octet_stream(value: Any) -> None:
    res = serve_value(value)
    assert res.headers["content-type"] == "application/octet-stream"
    assert res.body == b"\x00\x01"
    assert res.headers["content-length"] == "2"


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ({"a": [1, "é"]}, '{"a":[1,"é"]}'),
        ([1, 2], "[1,2]"),
        ((1, 2), "[1,2]"),
        (42, "42"),
        (1.5, "1.5"),
        (True, "true"),
        (False, "false"),
        ({}, "{}"),
    ],
)
def test_json_values(value: Any, wire: str) -> None:
    res = serve_value(value)
    assert res.headers["content-type"] == "application/json"
    assert res.body == wire.encode()
    assert res.headers["content-length"] == str(len(wire.encode()))


def test_none_is_empty_200() -> None:
    res = serve_value(None)
    assert res.status == 200
    assert res.body == b""
    assert res.headers["content-length"] == "0"
    assert "content-type" not in res.headers


def test_none_with_staged_status_and_headers() -> None:
    app = H3()

    @app.post("/")
    def create(event: H3Event) -> None:
        event.res.status = 202
        event.set_header("X-One", "1")
        event.append_header("Set-Cookie", "a=1")
        event.append_header("Set-Cookie", "b=2")

    res = TestClient(app).post("/")
    assert res.status == 202
    assert res.headers["x-one"] == "1"
    assert res.headers.getall("set-cookie") == ["a=1", "b=2"]


def test_staged_status_applies_to_values() -> None:
    app = H3()

    @app.get("/")
    def created(event: H3Event) -> dict[str, int]:
        event.set_status(201)
        return {"id": 1}

    res = TestClient(app).get("/")
    assert (res.status, res.json()) == (201, {"id": 1})


def test_response_object_with_status_and_headers() -> None:
    res = serve_value(Response({"ok": True}, status=201, headers={"X-A": "b", "Location": "/x"}))
    assert res.status == 201
    assert res.json() == {"ok": True}
    assert res.headers["x-a"] == "b"
    assert res.headers["location"] == "/x"
    assert res.headers["content-type"] == "application/json"


def test_response_media_type_and_own_content_type() -> None:
    assert Response("x", media_type="text/csv").headers["content-type"] == "text/csv"
    assert Response("x", headers={"Content-Type": "text/x"}).headers["content-type"] == "text/x"
    assert repr(Response(None, 204)) == "<Response 204>"
    given = Headers({"x": "1"})
    assert Response(None, headers=given).headers is given


def test_response_own_headers_win_over_staged() -> None:
    app = H3()

    @app.get("/")
    def handler(event: H3Event) -> Response:
        event.set_header("content-type", "text/staged")
        event.set_header("x-staged", "kept")
        event.set_header("x-both", "staged")
        return Response("body", headers={"x-both": "own"})

    res = TestClient(app).get("/")
    assert res.headers["content-type"] == "text/plain; charset=utf-8"
    assert res.headers["x-staged"] == "kept"
    assert res.headers.getall("x-both") == ["own"]


def test_merge_staged_without_staged_headers_keeps_the_object() -> None:
    event = H3Event("GET", "/", Headers())
    response = Response("x")
    headers = response.headers
    assert merge_staged(response, event).headers is headers


def test_html_redirect_no_content() -> None:
    app = H3()
    app.get("/h", lambda e: html("<p>hi</p>", 201, {"x": "y"}))
    app.get("/r", lambda e: redirect("/there"))
    app.get("/r301", lambda e: redirect("/perm", 301))
    app.get("/n", lambda e: no_content({"x-n": "1"}))
    client = TestClient(app)
    res = client.get("/h")
    assert (res.status, res.text, res.headers["content-type"]) == (
        201,
        "<p>hi</p>",
        "text/html; charset=utf-8",
    )
    assert res.headers["x"] == "y"
    res = client.get("/r")
    assert (res.status, res.headers["location"], res.body) == (302, "/there", b"")
    assert client.get("/r301").status == 301
    res = client.get("/n")
    assert (res.status, res.body, res.headers["x-n"]) == (204, b"", "1")
    assert "content-length" not in res.headers
    assert "transfer-encoding" not in res.headers


def test_redirect_refuses_non_3xx() -> None:
    with pytest.raises(ValueError, match="redirect status must be 3xx, got 200"):
        redirect("/x", 200)


@pytest.mark.parametrize("status", [99, 100, 103, 199, 1000])
def test_response_refuses_non_final_status(status: int) -> None:
    with pytest.raises(ValueError, match=f"invalid status code {status}"):
        Response(None, status)


def test_handler_returning_a_1xx_response_is_a_500() -> None:
    app = H3()
    app.get("/", lambda e: Response(None, 103))
    res = TestClient(app).get("/")
    assert res.status == 500
    assert res.json()["unhandled"] is True


def test_generator_is_streamed_chunked_over_the_wire() -> None:
    def gen() -> Iterator[Any]:
        yield "one,"
        yield b""  # empty pieces are skipped, not sent as a terminating chunk
        yield b"two,"
        yield bytearray(b"three")

    app = H3()
    app.get("/", lambda e: gen())
    client = TestClient(app)
    res = client.get("/")
    assert res.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in res.headers
    assert res.headers["content-type"] == "application/octet-stream"
    assert res.body == b"one,two,three"
    with client.stream("GET", "/") as stream:
        assert list(stream.iter_bytes()) == [b"one,", b"two,", b"three"]


def test_streamed_pieces_are_framed_as_chunks() -> None:
    # Read the raw bytes the server writes: each piece is its own chunk.
    from h3green.testing import _ClientConnection

    app = H3()
    app.get("/", lambda e: iter([b"ab", b"cde"]))
    app.freeze()
    from h3green.server import Config

    conn = _ClientConnection(app, Config(access_log=False), "127.0.0.1")
    conn.sock.inbound.put(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = b""
    while not raw.endswith(b"0\r\n\r\n"):
        raw += conn.sock.outbound.get(timeout=5)
    conn.disconnect()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"


def test_other_iterables_and_staged_type() -> None:
    app = H3()

    @app.get("/")
    def handler(event: H3Event) -> Any:
        return Response(("a", "b"), media_type="text/csv") if event.query else {"x"}.__iter__()

    client = TestClient(app)
    res = client.get("/?t=1")
    # a tuple is JSON, like a list
    assert res.json() == ["a", "b"]
    assert res.headers["content-type"] == "text/csv"
    assert client.get("/").body == b"x"


def test_http10_stream_is_close_delimited() -> None:
    app = H3()
    app.get("/", lambda e: iter([b"a", b"b"]))
    res = TestClient(app).get("/", http_version="1.0")
    assert res.body == b"ab"
    assert "transfer-encoding" not in res.headers
    assert "content-length" not in res.headers
    assert res.headers["connection"] == "close"


def test_head_drops_fixed_body_and_keeps_length() -> None:
    app = H3()
    app.get("/", lambda e: "hello")
    res = TestClient(app).head("/")
    assert res.status == 200
    assert res.body == b""
    assert res.headers["content-length"] == "5"


def test_head_on_a_stream_does_not_pull_the_body() -> None:
    pulled: list[int] = []

    def gen() -> Iterator[bytes]:
        pulled.append(1)
        yield b"never"

    app = H3()
    app.get("/", lambda e: gen())
    res = TestClient(app).head("/")
    assert (res.status, res.body) == (200, b"")
    assert pulled == []


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_drop_the_body(status: int) -> None:
    closed: list[bool] = []

    def gen() -> Iterator[bytes]:
        try:
            yield b"x"
        finally:
            closed.append(True)

    started = gen()
    next(started)  # a suspended generator: close() must run its finally block
    app = H3()
    app.get("/fixed", lambda e: Response("ignored", status))
    app.get("/stream", lambda e: Response(started, status))
    client = TestClient(app)
    for path in ("/fixed", "/stream"):
        res = client.get(path)
        assert (res.status, res.body) == (status, b"")
        assert "content-length" not in res.headers
        assert "transfer-encoding" not in res.headers
    assert closed == [True]


def test_iterable_failing_before_first_item_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    closed: list[bool] = []

    class Failing:
        def __iter__(self) -> Iterator[bytes]:
            raise RuntimeError("boom before anything")

        def close(self) -> None:
            closed.append(True)

    app = H3()
    app.get("/", lambda e: Response(Failing()))
    with caplog.at_level(logging.ERROR, logger="h3green"):
        res = TestClient(app).get("/")
    assert res.status == 500
    assert res.json() == {"status": 500, "unhandled": True, "message": "Internal Server Error"}
    assert b"boom" not in res.body
    assert closed == [True]
    assert sum("boom before anything" in (r.exc_text or "") for r in caplog.records) == 1


def test_generator_failing_at_first_item_is_a_500() -> None:
    def gen() -> Iterator[bytes]:
        raise ValueError("no")
        yield b""  # pragma: no cover

    app = H3()
    app.get("/", lambda e: gen())
    assert TestClient(app).get("/").status == 500


def test_iterable_failing_after_first_item_truncates_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    def gen() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("mid-stream")

    app = H3()
    app.get("/", lambda e: gen())
    with caplog.at_level(logging.ERROR, logger="h3green"):
        with TestClient(app).stream("GET", "/") as stream:
            assert stream.status == 200
            pieces = []
            # The client sees the connection end before the terminating chunk.
            with pytest.raises(
                h11.RemoteProtocolError, match="peer closed connection without sending complete message body"
            ):
                for piece in stream.iter_bytes():
                    pieces.append(piece)
    assert pieces == [b"partial"]
    assert any("mid-stream" in (r.exc_text or "") for r in caplog.records)


def test_bad_stream_item_type() -> None:
    app = H3()
    app.get("/", lambda e: iter([1, 2]))
    assert TestClient(app).get("/").status == 500


def test_unsupported_value_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="h3green"):
        res = serve_value(object())
    assert res.status == 500
    assert any("cannot encode a object as JSON" in (r.exc_text or "") for r in caplog.records)


def test_to_response_passes_responses_through_and_sse() -> None:
    event = H3Event("GET", "/", Headers())
    response = Response("x")
    assert to_response(response, event) is response
    event.start_sse()
    sse = to_response(None, event)
    assert isinstance(sse, SSEResponse) and sse.callback is None
    with pytest.raises(RuntimeError, match="must return None or an EventStream, not str"):
        to_response("x", event)


def test_json_dumps_is_compact_utf8() -> None:
    assert json_dumps({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()


def test_event_stream_returned_after_start_sse() -> None:
    from h3green import EventStream

    app = H3()

    @app.get("/events")
    def events(event: H3Event) -> EventStream:
        event.start_sse(headers={"x-stream": "1"})
        return EventStream(["a", "b"])

    with TestClient(app).stream("GET", "/events") as stream:
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.headers["x-stream"] == "1"
        assert [e.data for e in stream.iter_events()] == ["a", "b"]


def test_staged_content_type_beats_the_default_of_a_plain_value() -> None:
    app = H3()

    @app.get("/csv")
    def csv(event: H3Event) -> str:
        event.set_header("Content-Type", "text/csv; charset=utf-8")
        return "a,b\n1,2\n"

    @app.get("/explicit")
    def explicit(event: H3Event) -> Response:
        event.set_header("content-type", "text/csv")
        return html("<p>an explicit Response keeps its own type</p>")

    client = TestClient(app)
    response = client.get("/csv")
    assert response.headers.getall("content-type") == ["text/csv; charset=utf-8"]
    assert response.text == "a,b\n1,2\n"
    assert client.get("/explicit").headers.getall("content-type") == ["text/html; charset=utf-8"]
