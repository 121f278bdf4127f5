"""The reverse proxy against a real upstream h3green server on 127.0.0.1.

The upstream is an in-process ``Server`` on an ephemeral port (it shares this process's
gevent loop, and the proxy's upstream sockets are gevent's own), so every test can watch
both ends: what the upstream received, when its stream's ``on_close`` ran.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import h11
import pytest
from conftest import ServeApp
from helpers import RawClient, free_port
from test_gunicorn import (
    H3WORKER,
    StartGunicorn,
    gunicorn,  # noqa: F401 (a fixture, asked for by name)
)

from h3green import H3, H3Event, HTTPError, Response, Server, SSEWriter
from h3green.testing import TestClient
from h3green.utils import proxy as proxy_module
from h3green.utils import proxy_request

WAIT = 10.0  # seconds any await in these tests may take before it counts as a failure


class Upstream:
    """An h3green app that records what it saw, with events tests can await."""

    def __init__(self) -> None:
        self.app = H3()
        self.stream_closed = gevent.event.Event()
        self.stream_opened = gevent.event.Event()
        self.release = gevent.event.Event()
        self.first_piece = gevent.event.Event()
        self.body_closed = gevent.event.Event()
        self.server: Server | None = None
        app = self.app

        @app.get("/hello")
        def hello(event: H3Event) -> Response:
            return Response(
                "hello from upstream",
                headers=[
                    ("set-cookie", "a=1; Path=/"),
                    ("set-cookie", "b=2; Path=/"),
                    ("x-upstream", "yes"),
                    ("x-hop", "secret"),
                    ("connection", "x-hop"),
                    ("keep-alive", "timeout=5"),
                    ("proxy-authenticate", "Basic"),
                ],
            )

        @app.all("/echo/**")
        def echo(event: H3Event) -> dict[str, Any]:
            return {
                "method": event.method,
                "target": event.target,
                "headers": {name: event.headers.getall(name) for name in event.headers},
                "body": event.read_body().decode(),
            }

        @app.post("/upload")
        def upload(event: H3Event) -> dict[str, Any]:
            digest = hashlib.sha256()
            size = 0
            for piece in event.iter_body():
                size += len(piece)
                digest.update(piece)
                self.first_piece.set()
            return {"bytes": size, "sha256": digest.hexdigest()}

        @app.get("/redirect")
        def redirect(event: H3Event) -> Response:
            assert self.server is not None
            host, port = self.server.address
            response = Response(None, 302)
            response.headers.set("location", f"http://{host}:{port}/hello?x=1")
            return response

        @app.get("/elsewhere")
        def elsewhere(event: H3Event) -> Response:
            return Response(None, 301, {"location": "https://example.org/"})

        @app.get("/slow")
        def slow(event: H3Event) -> str:
            self.release.wait(WAIT)
            return "late"

        @app.get("/stream")
        def stream(event: H3Event) -> Iterator[bytes]:
            yield b"first|"
            self.release.wait(WAIT)
            yield b"second"

        @app.get("/endless")
        def endless(event: H3Event) -> Iterator[bytes]:
            try:
                while True:
                    yield b"x" * 1024
                    gevent.sleep(0.01)
            finally:
                self.body_closed.set()

        @app.get("/nothing")
        def nothing(event: H3Event) -> Response:
            return Response(None, 204, {"x-empty": "1"})

        @app.get("/missing-type")
        def missing(event: H3Event) -> None:
            raise HTTPError(404, "no such thing")

        @app.get("/events")
        def events(event: H3Event) -> None:
            event.start_sse(heartbeat=0)
            event.set_header("set-cookie", "stream=1")

            def run(writer: SSEWriter) -> None:
                writer.on_close(self.stream_closed.set)
                writer.send_event("hello", event="greeting", id="1")
                writer.send_comment("heartbeat")
                writer.send_event("line one\nline two", id="2")
                self.stream_opened.set()
                while writer.is_active:
                    gevent.sleep(0.05)

            event.set_stream_callback(run)

        @app.get("/finite")
        def finite(event: H3Event) -> None:
            event.start_sse(heartbeat=0)

            def run(writer: SSEWriter) -> None:
                for number in range(3):
                    writer.send_event(str(number))

            event.set_stream_callback(run)

        @app.get("/partial")
        def partial(event: H3Event) -> None:
            event.start_sse(heartbeat=0)

            def run(writer: SSEWriter) -> None:
                writer.send_raw(b"data: whole\n\ndata: unfinish")

            event.set_stream_callback(run)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.address
        return f"http://{host}:{port}"


@pytest.fixture
def upstream(serve_app: ServeApp) -> Iterator[Upstream]:
    up = Upstream()
    up.server = serve_app(up.app, max_body_size=64 * 1024 * 1024)
    yield up
    up.release.set()  # let any waiting handler finish before the server stops


def proxy_app(base: str, **options: Any) -> H3:
    app = H3()

    @app.all("/api/**")
    def relay(event: H3Event) -> Response | None:
        return proxy_request(event, base + event.target.removeprefix("/api"), **options)

    return app


pytestmark = pytest.mark.live


# -- plain responses ----------------------------------------------------------------------


def test_a_response_comes_back_with_cookies_kept_and_hop_by_hop_removed(upstream: Upstream) -> None:
    client = TestClient(proxy_app(upstream.url))
    response = client.get("/api/hello")
    assert response.status == 200 and response.text == "hello from upstream"
    assert response.headers.getall("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert response.headers["x-upstream"] == "yes"
    for name in ("x-hop", "keep-alive", "proxy-authenticate"):
        assert name not in response.headers
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_request_headers_body_and_query_go_up_end_to_end_only(upstream: Upstream) -> None:
    client = TestClient(proxy_app(upstream.url, headers={"x-api-key": "k"}), remote_addr="10.1.2.3")
    response = client.put(
        "/api/echo/thing?q=1&q=2",
        data=b"payload",
        headers=[
            ("x-custom", "c"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("connection", "x-drop"),
            ("x-drop", "gone"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic eA=="),
            ("x-forwarded-for", "192.0.2.1"),
        ],
    )
    seen = response.json()
    assert seen["method"] == "PUT" and seen["target"] == "/echo/thing?q=1&q=2" and seen["body"] == "payload"
    headers = seen["headers"]
    assert headers["x-custom"] == ["c"] and headers["x-api-key"] == ["k"]
    assert headers["cookie"] == ["a=1; b=2"]
    assert headers["host"] == [upstream.url.removeprefix("http://")]
    assert headers["x-forwarded-for"] == ["192.0.2.1"]  # passed on, not extended: xfwd is off
    for name in ("x-drop", "te", "proxy-authorization", "connection"):
        assert name not in headers


def test_xfwd_and_forward_headers(upstream: Upstream) -> None:
    app = proxy_app(upstream.url, xfwd=True, forward_headers=["X-Keep"])
    client = TestClient(app, remote_addr="10.1.2.3")
    seen = client.get("/api/echo/x", headers={"x-keep": "1", "x-other": "2", "x-forwarded-for": "192.0.2.1"})
    headers = seen.json()["headers"]
    assert headers["x-keep"] == ["1"] and "x-other" not in headers
    assert headers["x-forwarded-for"] == ["10.1.2.3"]  # the client's own was not forwarded
    assert headers["x-forwarded-proto"] == ["http"] and headers["x-forwarded-host"] == ["testserver"]
    seen = TestClient(proxy_app(upstream.url, xfwd=True), remote_addr="10.1.2.3").get(
        "/api/echo/x", headers={"x-forwarded-for": "192.0.2.1"}
    )
    assert seen.json()["headers"]["x-forwarded-for"] == ["192.0.2.1, 10.1.2.3"]


def test_location_is_rewritten_to_the_proxy_origin_only_when_it_is_the_upstream(upstream: Upstream) -> None:
    client = TestClient(proxy_app(upstream.url))
    response = client.get("/api/redirect")
    assert response.status == 302 and response.headers["location"] == "http://testserver/hello?x=1"
    assert client.get("/api/elsewhere").headers["location"] == "https://example.org/"


def test_statuses_and_bodiless_answers_pass_through(upstream: Upstream) -> None:
    client = TestClient(proxy_app(upstream.url))
    missing = client.get("/api/missing-type")
    assert missing.status == 404 and missing.json()["message"] == "no such thing"
    nothing = client.get("/api/nothing")
    assert nothing.status == 204 and nothing.body == b"" and nothing.headers["x-empty"] == "1"
    head = client.head("/api/hello")
    assert head.status == 200 and head.body == b"" and head.headers["x-upstream"] == "yes"
    # The pool reuses connections whose body was read to the end.
    assert client.get("/api/hello").text == "hello from upstream"


def test_the_proxy_body_limit_holds_for_what_it_streams_up(upstream: Upstream) -> None:
    client = TestClient(proxy_app(upstream.url), max_body_size=10)
    response = client.post("/api/upload", data=b"x" * 11)
    assert response.status == 413
    assert client.post("/api/upload", data=b"x" * 10).json()["bytes"] == 10


def test_the_response_body_streams_as_it_arrives(upstream: Upstream) -> None:
    client = TestClient(proxy_app(upstream.url))
    with client.stream("GET", "/api/stream") as response:
        pieces = response.iter_bytes()
        assert next(pieces) == b"first|"  # arrives while the upstream still holds the rest
        upstream.release.set()
        assert b"".join(pieces) == b"second"


def test_a_client_leaving_mid_body_closes_the_upstream_connection(
    serve_app: ServeApp, upstream: Upstream
) -> None:
    proxy = serve_app(proxy_app(upstream.url))
    client = RawClient(proxy.address, timeout=WAIT)
    try:
        assert client.open("GET", "/api/endless").status_code == 200
        assert next(client.pieces()).startswith(b"x")
    finally:
        client.close()
    assert upstream.body_closed.wait(WAIT), "the upstream kept sending to nobody"


def test_a_large_upload_streams_up_in_bounded_memory(serve_app: ServeApp, upstream: Upstream) -> None:
    size, piece = 32 * 1024 * 1024, b"x" * 65536
    proxy = serve_app(proxy_app(upstream.url), max_body_size=64 * 1024 * 1024)
    client = RawClient(proxy.address, timeout=WAIT)
    tracemalloc.start()
    try:
        request = h11.Request(
            method="POST",
            target="/api/upload",
            headers=[("host", "localhost"), ("content-length", str(size))],
        )
        client.sock.sendall(client.h11.send(request) or b"")
        half = size // 2
        for _ in range(half // len(piece)):
            client.sock.sendall(client.h11.send(h11.Data(data=piece)) or b"")
        # The upstream reads the body before the client has sent all of it: no buffering.
        assert upstream.first_piece.wait(WAIT)
        for _ in range((size - half) // len(piece)):
            client.sock.sendall(client.h11.send(h11.Data(data=piece)) or b"")
        client.sock.sendall(client.h11.send(h11.EndOfMessage()) or b"")
        status, body = next_response(client)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        client.close()
    assert status == 200
    expected = hashlib.sha256(piece * (size // len(piece))).hexdigest()
    assert json.loads(body) == {"bytes": size, "sha256": expected}
    assert peak < size // 4, f"peak {peak} bytes traced while relaying {size}"


def next_response(client: RawClient) -> tuple[int, bytes]:
    while True:
        event = client.next_event()
        if type(event) is h11.Response:
            return event.status_code, b"".join(client.pieces())


# -- failures -----------------------------------------------------------------------------


def test_a_dead_upstream_is_a_502_without_detail() -> None:
    port = free_port()
    response = TestClient(proxy_app(f"http://127.0.0.1:{port}")).get("/api/anything")
    assert response.status == 502
    assert response.json()["message"] == "Bad Gateway: the upstream server could not be reached"
    assert str(port) not in response.text and "127.0.0.1" not in response.text


def test_a_slow_upstream_is_a_504_without_detail(upstream: Upstream) -> None:
    response = TestClient(proxy_app(upstream.url, timeout=0.2)).get("/api/slow")
    assert response.status == 504
    assert response.json()["message"] == "Gateway Timeout: the upstream server did not answer in time"
    assert upstream.url.removeprefix("http://") not in response.text


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (OSError(111, "refused"), 502),
        (TimeoutError("connect timed out"), 504),
        (__import__("socket").gaierror(-2, "Name or service not known"), 502),
    ],
)
def test_connection_failures_map_to_gateway_statuses(
    monkeypatch: pytest.MonkeyPatch, error: Exception, status: int
) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(vars(proxy_module)["gsocket"], "create_connection", fail)
    response = TestClient(proxy_app("http://upstream.invalid:8080")).get("/api/x")
    assert response.status == status and "invalid" not in response.text


def test_misuse_and_missing_urllib3(monkeypatch: pytest.MonkeyPatch) -> None:
    event = H3Event("GET", "/", __import__("h3green").Headers())
    with pytest.raises(ValueError, match="timeout must be > 0"):
        proxy_request(event, "http://127.0.0.1:1/", timeout=0)
    monkeypatch.setitem(sys.modules, "urllib3", None)
    with pytest.raises(RuntimeError, match=r"h3green\[proxy\]"):
        proxy_request(event, "http://127.0.0.1:1/")


def test_a_pool_of_ones_own(upstream: Upstream) -> None:
    pool = proxy_module._green_manager()
    client = TestClient(proxy_app(upstream.url, pool=pool))
    assert client.get("/api/hello").text == "hello from upstream"


# -- Server-Sent Events -------------------------------------------------------------------


def test_an_event_stream_is_relayed_event_by_event(upstream: Upstream) -> None:
    client = TestClient(proxy_app(upstream.url))
    with client.stream("GET", "/api/events") as response:
        assert response.status == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["set-cookie"] == "stream=1"
        assert response.headers.getall("x-accel-buffering") == ["no"]
        assert response.headers.getall("cache-control") == ["no-cache"]
        lines = response.iter_lines()
        received = [next(lines) for _ in range(8)]
        assert received == [
            "event: greeting",
            "id: 1",
            "data: hello",
            "",
            ": heartbeat",
            "id: 2",
            "data: line one",
            "data: line two",
        ]
    assert upstream.stream_closed.wait(WAIT), "the upstream never saw its client go"


def test_a_finished_upstream_stream_ends_the_relay(upstream: Upstream) -> None:
    client = TestClient(proxy_app(upstream.url))
    with client.stream("GET", "/api/finite") as response:
        assert [event.data for event in response.iter_events()] == ["0", "1", "2"]
    with client.stream("GET", "/api/partial") as response:
        assert response.read() == b"data: whole\n\ndata: unfinish"


def test_a_quiet_upstream_stream_ends_after_the_timeout(upstream: Upstream) -> None:
    client = TestClient(proxy_app(upstream.url, timeout=0.5))
    with client.stream("GET", "/api/events") as response:
        # The upstream sends no heartbeats: the relay gives up and ends the body.
        assert b"data: line two" in response.read()
    assert upstream.stream_closed.wait(WAIT)


def test_long_lines_and_split_crlf_are_relayed_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_module, "MAX_SSE_LINE", 8)

    class FakeUpstream:
        def __init__(self, pieces: list[bytes]) -> None:
            self.pieces = pieces
            self.closed = False

        def read1(self, size: int) -> bytes:
            return self.pieces.pop(0) if self.pieces else b""

        def close(self) -> None:
            self.closed = True

    class Writer:
        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def send_raw(self, payload: bytes) -> None:
            self.sent.append(payload)

    fake = FakeUpstream([b"data: a\r", b"\ndata: b", b"cdefghijklmnop", b"\n\n"])
    writer = Writer()
    proxy_module._SSERelay(fake)(writer)  # type: ignore[arg-type]
    assert writer.sent == [b"data: a\r\n", b"data: bcdefghijklmnop", b"\n\n"]
    assert fake.closed


def test_client_abort_closes_the_upstream_stream_over_real_sockets(
    serve_app: ServeApp, upstream: Upstream
) -> None:
    proxy = serve_app(proxy_app(upstream.url))
    client = RawClient(proxy.address, timeout=WAIT)
    try:
        assert client.open("GET", "/api/events").status_code == 200
        assert b"data: line two" in client.read_until(b"data: line two", WAIT)
        assert not upstream.stream_closed.is_set()
    finally:
        client.close()
    assert upstream.stream_closed.wait(WAIT), "the upstream never saw its client go"


# -- under gunicorn's H3Worker ------------------------------------------------------------


PROXY_APP = """
import os

from h3green import H3
from h3green.utils import proxy_request

app = H3()


@app.all("/api/**")
def relay(event):
    return proxy_request(event, os.environ["UPSTREAM"] + event.target.removeprefix("/api"))
"""


def test_the_relay_under_gunicorn_h3worker(
    request: pytest.FixtureRequest, upstream: Upstream, tmp_path: Any
) -> None:
    start_gunicorn: StartGunicorn = request.getfixturevalue("gunicorn")
    (tmp_path / "proxy_app.py").write_text(PROXY_APP)
    server = start_gunicorn("proxy_app:app", H3WORKER, env={"UPSTREAM": upstream.url})
    plain = RawClient(server.address, timeout=WAIT)
    try:
        status, _, body = plain.fetch("GET", "/api/hello")
        assert status == 200 and body == b"hello from upstream"
    finally:
        plain.close()
    client = RawClient(server.address, timeout=WAIT)
    try:
        assert client.open("GET", "/api/events").status_code == 200
        assert b"data: line two" in client.read_until(b"data: line two", WAIT)
    finally:
        client.close()
    assert upstream.stream_closed.wait(WAIT), "the upstream never saw its client go"


def test_a_failure_after_the_upstream_answered_closes_it(upstream: Upstream) -> None:
    app = H3()

    @app.get("/twice")
    def twice(event: H3Event) -> Response | None:
        event.start_sse()  # the relay cannot start a second stream: SSEAlreadyStarted
        return proxy_request(event, upstream.url + "/events")

    response = TestClient(app).get("/twice")
    assert response.status == 500
    assert upstream.stream_closed.wait(WAIT), "the upstream stream was left open"
