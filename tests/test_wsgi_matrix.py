"""The same requests through the native server (``TestClient``) and through WSGI.

Every case must give the same status, body and headers both ways; the WSGI side runs
under ``wsgiref.validate`` (except where wsgiref is stricter than PEP 3333: it wants a
Content-Type on every response, and h3green sends none for an empty body).
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import unquote_to_bytes

import gevent
import pytest
from helpers.wsgi import call, make_environ

from h3green import H3, H3Event, HTTPError, Response, SSEWriter
from h3green.response import redirect
from h3green.testing import TestClient, parse_sse_lines
from h3green.wsgi import WSGIAdapter

MAX_BODY = 64
COMPARED_HEADERS = ("content-type", "content-length", "allow", "location", "x-mw", "x-staged", "set-cookie")


def build_app() -> H3:
    app = H3()

    @app.use
    def tag(event: H3Event, next: Any) -> Response:
        response: Response = next()
        response.headers.set("x-mw", event.method)
        return response

    @app.get("/users/:id")
    def user(event: H3Event) -> dict[str, Any]:
        return {"id": event.params["id"], "tags": event.query.getall("tag")}

    @app.get("/text")
    def text(event: H3Event) -> str:
        event.set_header("x-staged", "yes")
        event.append_header("set-cookie", "a=1")
        event.set_status(201)
        return "caf\u00e9"

    @app.get("/bytes")
    def raw(event: H3Event) -> bytes:
        return b"\x00\x01"

    @app.post("/json")
    def json_echo(event: H3Event) -> Any:
        return {"got": event.read_json()}

    @app.post("/form")
    def form(event: H3Event) -> Any:
        return event.read_form().to_dict()

    @app.put("/only-put")
    def only_put(event: H3Event) -> str:
        return "put"

    @app.get("/teapot")
    def teapot(event: H3Event) -> None:
        raise HTTPError(418, "short and stout", data={"spout": True}, headers={"x-staged": "err"})

    @app.get("/crash")
    def crash(event: H3Event) -> None:
        raise RuntimeError("kaput")

    @app.get("/stream")
    def stream(event: H3Event) -> Any:
        return (piece for piece in ["one ", "two ", "three"])

    @app.get("/conflict")
    def conflict(event: H3Event) -> Any:
        def pieces() -> Any:
            raise HTTPError(409, "changed meanwhile")
            yield b""  # pragma: no cover - makes this a generator

        return pieces()

    @app.get("/go")
    def go(event: H3Event) -> Response:
        return redirect("/users/1", 301)

    @app.get("/path/**:rest")
    def path(event: H3Event) -> dict[str, str]:
        return {"path": event.path, "rest": event.params["rest"]}

    @app.get("/empty")
    def empty(event: H3Event) -> None:
        return None

    @app.get("/events")
    def events(event: H3Event) -> None:
        event.start_sse()

        def run(writer: SSEWriter) -> None:
            with writer:
                for n in range(3):
                    writer.send_event({"n": n}, event="tick", id=str(n))
                    gevent.sleep(0.001)

        event.set_stream_callback(run)

    return app


# (method, target, headers, body, validate under wsgiref)
CASES: list[tuple[str, str, dict[str, str], bytes | None, bool]] = [
    ("GET", "/users/42?tag=a&tag=b", {}, None, True),
    ("GET", "/users/caf%C3%A9", {}, None, True),
    ("GET", "/text", {}, None, True),
    ("HEAD", "/text", {}, None, True),
    ("GET", "/bytes", {}, None, True),
    ("POST", "/json", {"content-type": "application/json"}, b'{"a": [1, 2]}', True),
    ("POST", "/json", {"content-type": "application/json"}, b"{not json", True),
    ("POST", "/json", {"content-type": "application/json"}, b"[" + b"1," * 40 + b"1]", True),
    ("POST", "/form", {"content-type": "application/x-www-form-urlencoded"}, b"a=1&b=two+words", True),
    ("POST", "/form", {"content-type": "text/csv"}, b"a,b", True),
    ("GET", "/only-put", {}, None, True),
    ("OPTIONS", "/only-put", {}, None, True),
    ("DELETE", "/nowhere", {}, None, True),
    ("GET", "/teapot", {}, None, True),
    ("GET", "/crash", {}, None, True),
    ("GET", "/stream", {}, None, True),
    ("HEAD", "/stream", {}, None, True),
    ("GET", "/conflict", {}, None, True),
    ("GET", "/go", {}, None, False),
    ("GET", "/path/a/./b/../c", {}, None, True),
    ("GET", "/path/%2e%2e/x%2Fy", {}, None, True),
    ("GET", "/users/%ff", {}, None, True),
    ("GET", "/empty", {}, None, False),
]


def via_wsgi(method: str, target: str, headers: dict[str, str], body: bytes | None, validate: bool) -> Any:
    raw_path, _, query = target.partition("?")
    # What a WSGI server does: percent-decode, then hand over the bytes as latin-1.
    path_info = unquote_to_bytes(raw_path).decode("latin-1")
    environ = make_environ(
        method, path_info, query=query, body=body, headers={"host": "testserver", **headers}
    )
    if body is not None:
        environ["wsgi.input"] = io.BytesIO(body)
    return call(WSGIAdapter(build_app(), max_body_size=MAX_BODY), environ, validate=validate)


def selected(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((k.lower(), v) for k, v in headers if k.lower() in COMPARED_HEADERS)


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case[0]} {case[1]}"[:40])
def test_native_and_wsgi_agree(case: tuple[str, str, dict[str, str], bytes | None, bool]) -> None:
    method, target, headers, body, validate = case
    native = TestClient(build_app(), max_body_size=MAX_BODY).request(
        method, target, headers=headers, data=body if body is not None else None
    )
    wsgi = via_wsgi(method, target, headers, body, validate)
    assert wsgi.status_code == native.status_code
    assert wsgi.status.split(" ", 1)[1] == native.reason
    assert wsgi.body == native.content
    native_headers = selected(native.headers.items())
    wsgi_headers = selected(wsgi.headers)
    if native.headers.get("transfer-encoding") == "chunked":
        assert wsgi.header("content-length") is None
    assert wsgi_headers == native_headers


def test_matrix_covers_the_interesting_statuses() -> None:
    statuses = {via_wsgi(*case).status_code for case in CASES}
    assert {200, 201, 204, 301, 400, 404, 405, 409, 413, 415, 418, 500} <= statuses


def test_sse_events_agree() -> None:
    with TestClient(build_app()).stream("GET", "/events") as stream:
        native = [(e.event, e.id, e.data) for e in stream.iter_events()]
    wsgi = via_wsgi("GET", "/events", {}, None, True)
    lines = iter(wsgi.body.decode().splitlines())
    over_wsgi = [(e.event, e.id, e.data) for e in parse_sse_lines(lines)]
    assert native == over_wsgi == [("tick", str(n), f'{{"n":{n}}}') for n in range(3)]
