"""WSGI applications mounted inside an ``H3`` app: environ, input, start_response, bodies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from h3green import H3
from h3green.testing import TestClient
from h3green.wsgi import WSGIMount

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

ENVIRON_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "HTTP_HOST",
    "HTTP_X_TAG",
    "wsgi.url_scheme",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
    "wsgi.version",
)


def environ_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Answers with the environ it got (PEP 3333 strings re-encoded as latin-1 bytes)."""
    seen = {key: environ.get(key) for key in ENVIRON_KEYS}
    seen["PATH_INFO_UTF8"] = environ["PATH_INFO"].encode("latin-1").decode("utf-8")
    seen["body"] = environ["wsgi.input"].read().decode()
    seen["errors"] = hasattr(environ["wsgi.errors"], "write")
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def mounted(wsgi_app: Any, prefix: str = "/legacy") -> TestClient:
    app = H3()
    app.get("/", lambda e: "native")
    app.mount(prefix, wsgi_app)
    return TestClient(app)


def test_script_name_and_path_info_split() -> None:
    client = mounted(environ_app)
    data = client.get("/legacy/a/b?x=1").json()
    assert data["SCRIPT_NAME"] == "/legacy"
    assert data["PATH_INFO"] == "/a/b"
    assert data["QUERY_STRING"] == "x=1"
    assert data["REQUEST_METHOD"] == "GET"
    assert client.get("/legacy").json()["PATH_INFO"] == ""
    assert client.get("/legacy/").json()["PATH_INFO"] == "/"
    assert client.get("/").text == "native"


def test_utf8_path_info_is_latin1_of_the_bytes() -> None:
    data = mounted(environ_app).get("/legacy/caf%C3%A9").json()
    assert data["PATH_INFO"] == "/caf\u00c3\u00a9"
    assert data["PATH_INFO_UTF8"] == "/caf\u00e9"


def test_nested_mount_keeps_the_outer_prefix_in_script_name() -> None:
    inner = H3()
    inner.mount("/wsgi", environ_app)
    outer = H3()
    outer.mount("/outer", inner)
    data = TestClient(outer).get("/outer/wsgi/x").json()
    assert data["SCRIPT_NAME"] == "/outer/wsgi"
    assert data["PATH_INFO"] == "/x"


def test_full_environ() -> None:
    client = mounted(environ_app)
    data = client.post(
        "/legacy/form",
        data={"a": "1"},
        headers=[("host", "example.org:8080"), ("x-tag", "one"), ("x-tag", "two")],
    ).json()
    assert data["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert data["CONTENT_LENGTH"] == "3"
    assert data["body"] == "a=1"
    assert data["HTTP_HOST"] == "example.org:8080"
    assert data["HTTP_X_TAG"] == "one,two"
    assert (data["SERVER_NAME"], data["SERVER_PORT"]) == ("example.org", "8080")
    assert data["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert data["REMOTE_ADDR"] == "127.0.0.1"
    assert data["wsgi.url_scheme"] == "http"
    assert data["wsgi.version"] == [1, 0]
    assert (data["wsgi.multithread"], data["wsgi.multiprocess"], data["wsgi.run_once"]) == (
        False,
        False,
        False,
    )
    assert data["errors"] is True


@pytest.mark.parametrize(
    ("host", "expected"),
    [("example.org", ["example.org", "80"]), ("[::1]:9000", ["[::1]", "9000"]), ("[::1]", ["[::1]", "80"])],
)
def test_server_name_and_port_from_host(host: str, expected: list[str]) -> None:
    data = mounted(environ_app).get("/legacy/", headers={"host": host}).json()
    assert [data["SERVER_NAME"], data["SERVER_PORT"]] == expected


def input_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    stream = environ["wsgi.input"]
    parts = [
        stream.read(3),
        stream.readline(),
        stream.readline(2),
        *stream.readlines(),
        stream.read(),
        stream.read(5),
    ]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps([p.decode() for p in parts]).encode()]


def test_wsgi_input_file_interface() -> None:
    client = mounted(input_app)
    data = client.post("/legacy/", data=b"abcdef\nghij\nkl\nmn").json()
    assert data == ["abc", "def\n", "gh", "ij\n", "kl\n", "mn", "", ""]


def test_wsgi_input_iteration_and_bounded_readline() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        stream = environ["wsgi.input"]
        first = stream.readline(4)
        lines = list(stream)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps([first.decode(), *(line.decode() for line in lines)]).encode()]

    data = mounted(app).post("/legacy/", data=b"abcdefgh\n12\n3").json()
    assert data == ["abcd", "efgh\n", "12\n", "3"]
    hinted: list[int] = []

    def hint_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        hinted.append(len(environ["wsgi.input"].readlines(2)))
        start_response("204 No Content", [])
        return []

    mounted(hint_app).post("/legacy/", data=b"a\nb\nc\n")
    assert hinted == [1]


def test_body_over_the_limit_is_413_even_if_the_app_swallows_it() -> None:
    def swallowing(environ: Environ, start_response: StartResponse) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except Exception:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"app error page"]
        start_response("200 OK", [("Content-Type", "text/plain")])  # pragma: no cover
        return [b"read it"]  # pragma: no cover

    def raising(environ: Environ, start_response: StartResponse) -> list[bytes]:
        environ["wsgi.input"].read()
        raise AssertionError("unreachable")  # pragma: no cover

    def failing_later(environ: Environ, start_response: StartResponse) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except Exception as exc:
            raise RuntimeError("wrapped") from exc
        return []  # pragma: no cover

    for wsgi_app in (swallowing, raising, failing_later):
        app = H3()
        app.mount("/legacy", wsgi_app)
        response = TestClient(app, max_body_size=4).post("/legacy/", data=b"0123456789")
        assert response.status_code == 413, wsgi_app
        assert response.json()["message"] == "request body exceeds 4 bytes"


def test_write_callable_and_mixed_iterable() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one ")
        write(b"")
        write(b"two ")
        return [b"three"]

    assert mounted(app).get("/legacy/").text == "one two three"


def test_write_during_streaming_is_sent_in_order() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a"
        write(b"b")
        yield b""
        yield b"c"

    response = mounted(app).get("/legacy/")
    assert response.text == "abc"
    assert response.headers.get("transfer-encoding") == "chunked"


def test_write_misuse_is_a_500() -> None:
    def early(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [])
        write("text")
        return []  # pragma: no cover

    response = mounted(early).get("/legacy/")
    assert response.status_code == 500


def test_write_before_start_response_is_refused() -> None:
    from h3green.wsgi_mount import _StartResponse

    with pytest.raises(RuntimeError, match="before start_response"):
        _StartResponse().write(b"x")


def test_status_and_headers_pass_through_unchanged() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("299 Custom", [("X-One", "1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        return [b"raw"]

    response = mounted(app).get("/legacy/")
    assert response.status_code == 299
    assert "content-type" not in response.headers
    assert response.headers.getall("set-cookie") == ["a=1", "b=2"]
    assert response.headers["x-one"] == "1"
    assert response.content == b"raw"


def test_declared_length_is_buffered_and_framed_by_length() -> None:
    response = mounted(environ_app).get("/legacy/x")
    assert response.headers["content-length"] == str(len(response.content))
    assert "transfer-encoding" not in response.headers


def test_large_declared_length_streams() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"ab", b"cd"]

    tiny = H3()
    tiny.on("*", "/legacy", WSGIMount(app, "/legacy", buffer_limit=1))
    response = TestClient(tiny).get("/legacy")
    assert response.content == b"abcd"
    assert response.headers.get("transfer-encoding") == "chunked"


class ClosingBody:
    def __init__(self, pieces: list[bytes], fail_at: int | None = None) -> None:
        self.pieces = pieces
        self.fail_at = fail_at
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        for index, piece in enumerate(self.pieces):
            if index == self.fail_at:
                raise RuntimeError("iteration failed")
            yield piece

    def close(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_close_is_called_after_streaming(method: str) -> None:
    body = ClosingBody([b"x", b"y"])

    def app(environ: Environ, start_response: StartResponse) -> ClosingBody:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    response = mounted(app).request(method, "/legacy/")
    assert response.content == (b"xy" if method == "GET" else b"")
    assert body.closed == 1


def test_close_is_called_when_iteration_fails_before_the_head(caplog: pytest.LogCaptureFixture) -> None:
    body = ClosingBody([b"x"], fail_at=0)

    def app(environ: Environ, start_response: StartResponse) -> ClosingBody:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    assert mounted(app).get("/legacy/").status_code == 500
    assert body.closed == 1


def test_close_is_called_when_iteration_fails_mid_stream(caplog: pytest.LogCaptureFixture) -> None:
    body = ClosingBody([b"x", b"y"], fail_at=1)

    def app(environ: Environ, start_response: StartResponse) -> ClosingBody:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    client = mounted(app)
    with pytest.raises(Exception, match=r"closed"):  # a cut-short body
        client.get("/legacy/")
    assert body.closed == 1


def test_close_is_called_for_a_buffered_empty_body() -> None:
    body = ClosingBody([])

    def app(environ: Environ, start_response: StartResponse) -> ClosingBody:
        start_response("204 No Content", [])
        return body

    assert mounted(app).get("/legacy/").status_code == 204
    assert body.closed == 1


def test_exc_info_before_the_head_replaces_it() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("late failure")
        except ValueError:
            import sys

            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"error page"]

    response = mounted(app).get("/legacy/")
    assert response.status_code == 500
    assert response.text == "error page"


def test_exc_info_after_the_head_reraises() -> None:
    import sys

    raised: list[BaseException] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first"
        try:
            raise ValueError("mid-stream")
        except ValueError:
            try:
                start_response("500 Oops", [], sys.exc_info())
            except ValueError as exc:
                raised.append(exc)
        yield b"!"

    assert mounted(app).get("/legacy/").text == "first!"
    assert [str(exc) for exc in raised] == ["mid-stream"]


@pytest.mark.parametrize(
    ("app_status", "message"),
    [("OK", "must look like"), ("2000K", "must look like"), (None, "without calling start_response")],
)
def test_start_response_misuse_is_a_logged_500(
    app_status: str | None, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        if app_status is not None:
            start_response(app_status, [])
        return [b"x"]

    assert mounted(app).get("/legacy/").status_code == 500
    assert message in caplog.text


def test_start_response_twice_without_exc_info_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        start_response("201 Created", [])
        return []  # pragma: no cover

    assert mounted(app).get("/legacy/").status_code == 500
    assert "already called" in caplog.text


def test_mount_arguments() -> None:
    with pytest.raises(TypeError, match="not a WSGI callable"):
        WSGIMount(42, "/x")  # type: ignore[arg-type]
    assert repr(WSGIMount(environ_app, "x/")).startswith("<WSGIMount /x ")


def test_flask_app_mounted() -> None:
    import flask

    legacy = flask.Flask("legacy")

    @legacy.post("/form")
    def form() -> Any:
        return {"name": flask.request.form["name"], "root": flask.request.script_root}

    @legacy.get("/go")
    def go() -> Any:
        return flask.redirect(flask.url_for("form"))

    client = mounted(legacy)
    assert client.post("/legacy/form", data={"name": "ada"}).json() == {"name": "ada", "root": "/legacy"}
    redirect = client.get("/legacy/go")
    assert redirect.status_code == 302
    assert redirect.headers["location"] == "/legacy/form"


def test_event_path_is_restored_for_hooks() -> None:
    seen: list[str] = []
    app = H3(on_response=lambda e, r: seen.append(e.path))
    app.mount("/legacy", environ_app)
    TestClient(app).get("/legacy/q")
    assert seen == ["/legacy/q"]


def test_write_after_the_first_chunk_of_a_buffered_body() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
        yield b"ab"
        write(b"cd")
        yield b"ef"

    response = mounted(app).get("/legacy/")
    assert response.content == b"abcdef"
    assert response.headers["content-length"] == "6"


def test_write_while_streaming_keeps_the_order() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"1"
        write(b"2")
        yield b"3"
        write(b"4")

    response = mounted(app).get("/legacy/")
    assert response.content == b"1234"
    assert response.headers.get("transfer-encoding") == "chunked"


def headers_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    seen = {key: value for key, value in environ.items() if key.startswith("HTTP_X")}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


SPOOF = {"X-Forwarded-For": "1.2.3.4", "X_Forwarded_For": "6.6.6.6", "X_Only": "u"}


def test_underscore_header_names_are_dropped_by_default() -> None:
    app = H3()
    app.mount("/legacy", headers_app)
    assert TestClient(app).get("/legacy", headers=SPOOF).json() == {"HTTP_X_FORWARDED_FOR": "1.2.3.4"}


def test_header_map_refuse_answers_400() -> None:
    app = H3()
    app.mount("/legacy", headers_app, header_map="refuse")
    res = TestClient(app).get("/legacy", headers=SPOOF)
    assert res.status == 400
    assert res.json()["message"] == "header name with an underscore: x_forwarded_for"
    assert TestClient(app).get("/legacy", headers={"X-A": "1"}).json() == {"HTTP_X_A": "1"}


def test_header_map_dangerous_merges_as_wsgi_spells_them() -> None:
    app = H3()
    app.mount("/legacy", headers_app, header_map="dangerous")
    assert TestClient(app).get("/legacy", headers=SPOOF).json() == {
        "HTTP_X_FORWARDED_FOR": "1.2.3.4,6.6.6.6",
        "HTTP_X_ONLY": "u",
    }


def test_header_map_is_checked_at_setup() -> None:
    with pytest.raises(ValueError, match="header_map must be one of drop, refuse, dangerous"):
        WSGIMount(headers_app, "/x", header_map="keep")
    with pytest.raises(ValueError, match="WSGI applications only"):
        H3().mount("/x", H3(), header_map="dangerous")
