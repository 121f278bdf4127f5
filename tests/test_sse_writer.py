"""SSEWriter, start_sse/set_stream_callback and EventStream, through TestClient's real framing."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import gevent
import pytest

from h3green import (
    H3,
    BackpressureDetected,
    ConnectionLost,
    EventStream,
    H3Event,
    Headers,
    ResponseAlreadySent,
    SSEAlreadyStarted,
    SSEEvent,
    SSEWriter,
    WriterClosed,
)
from h3green.errors import SSEError
from h3green.testing import TestClient


class FakeTransport:
    def __init__(self, fail: type[SSEError] | None = None) -> None:
        self.sent: list[bytes] = []
        self.finished = 0
        self.aborted = 0
        self.fail = fail

    def send(self, payload: bytes) -> None:
        if self.fail is not None:
            raise self.fail("boom")
        self.sent.append(payload)

    def finish(self) -> None:
        self.finished += 1

    def abort(self) -> None:
        self.aborted += 1


def make_writer(transport: Any = None, headers: dict[str, str] | None = None) -> SSEWriter:
    event = H3Event("GET", "/s?x=1", Headers(headers))
    return SSEWriter(transport or FakeTransport(), event)


# -- the writer on its own ------------------------------------------------------------------


def test_writer_counts_and_closes_once() -> None:
    transport = FakeTransport()
    writer = make_writer(transport, {"last-event-id": "41"})
    closed: list[int] = []
    writer.on_close(lambda: closed.append(1))
    assert writer.is_active and writer.last_event_id == "41" and writer.event.get_query("x") == "1"
    writer.send_event("a", id="42")
    writer.send_comment("ping")
    assert writer.event_count == 1
    assert transport.sent == [b"id: 42\ndata: a\n\n", b": ping\n"]
    writer.close()
    writer.close()
    assert not writer.is_active and transport.finished == 1 and closed == [1]
    with pytest.raises(WriterClosed):
        writer.send_event("late")
    # A hook added after the end runs at once.
    writer.on_close(lambda: closed.append(2))
    assert closed == [1, 2]
    assert "active=False" in repr(writer)


def test_invalid_event_writes_nothing() -> None:
    transport = FakeTransport()
    writer = make_writer(transport)
    with pytest.raises(ValueError):
        writer.send_event("x", id="a\nb")
    with pytest.raises(ValueError):
        writer.send_event("x", retry=-5)
    assert transport.sent == [] and writer.event_count == 0 and writer.is_active


def test_context_manager_closes() -> None:
    transport = FakeTransport()
    with make_writer(transport) as writer:
        writer.send_event(1)
    assert not writer.is_active and transport.finished == 1


@pytest.mark.parametrize(
    ("fail", "later"), [(ConnectionLost, ConnectionLost), (BackpressureDetected, BackpressureDetected)]
)
def test_transport_failures_end_the_stream(fail: type[SSEError], later: type[SSEError]) -> None:
    writer = make_writer(FakeTransport(fail))
    closed: list[int] = []
    writer.on_close(lambda: closed.append(1))
    with pytest.raises(fail):
        writer.send_event("x")
    assert not writer.is_active and closed == [1]
    with pytest.raises(later):
        writer.send_comment()
    writer.close()
    assert closed == [1]


def test_drop_defers_hooks_and_aborts() -> None:
    transport = FakeTransport()
    writer = make_writer(transport)
    closed: list[int] = []
    writer.on_close(lambda: closed.append(1))
    writer.drop()
    writer.drop()
    assert transport.aborted == 1 and closed == []
    with pytest.raises(BackpressureDetected):
        writer.send_event("x")
    writer.close()  # the stream's own greenlet ends it: the hooks run there, once
    writer.close()
    assert closed == [1] and transport.finished == 0


def test_failing_hook_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    writer = make_writer()
    calls: list[int] = []

    def bad() -> None:
        raise RuntimeError("hook broke")

    writer.on_close(bad)
    writer.on_close(lambda: calls.append(1))
    with caplog.at_level(logging.ERROR, "h3green"):
        writer.close()
    assert calls == [1]
    assert "hook broke" in caplog.text


# -- start_sse / set_stream_callback --------------------------------------------------------


def test_start_sse_headers_and_errors() -> None:
    event = H3Event("GET", "/", Headers())
    with pytest.raises(RuntimeError, match="start_sse"):
        event.set_stream_callback(lambda w: None)
    event.start_sse(headers={"x-extra": "1"})
    assert event.is_sse
    headers = event.res.headers
    assert headers.get("content-type") == "text/event-stream; charset=utf-8"
    assert headers.get("cache-control") == "no-cache"
    assert headers.get("x-accel-buffering") == "no"
    assert headers.get("x-extra") == "1"
    assert "connection" not in headers and "content-length" not in headers
    with pytest.raises(SSEAlreadyStarted):
        event.start_sse()
    with pytest.raises(TypeError):
        event.set_stream_callback("nope")  # type: ignore[arg-type]
    sent = H3Event("GET", "/", Headers())
    sent._head_sent = True
    with pytest.raises(ResponseAlreadySent):
        sent.start_sse()
    assert issubclass(SSEAlreadyStarted, SSEError) and issubclass(ResponseAlreadySent, SSEError)


def sse_app(callback: Any, **start: Any) -> H3:
    app = H3()

    @app.get("/s")
    def stream(event: H3Event) -> None:
        event.start_sse(**start)
        event.set_stream_callback(callback)

    return app


def test_handler_returns_before_the_callback_runs() -> None:
    order: list[str] = []
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    app = H3()

    @app.get("/s")
    def stream(event: H3Event) -> None:
        var.set("from handler")
        event.start_sse()

        def callback(writer: SSEWriter) -> None:
            order.append("callback")
            writer.send_event(var.get(), event="ctx")
            writer.send_event(writer.event.params.get("x", "") + (writer.event.get_query("q") or ""))

        event.set_stream_callback(callback)
        order.append("handler returned")

    response = TestClient(app).get("/s?q=query")
    assert order == ["handler returned", "callback"]
    assert response.status == 200
    assert response.headers.get("transfer-encoding") == "chunked"
    assert response.body == b"event: ctx\ndata: from handler\n\ndata: query\n\n"


def test_callback_return_closes_and_hooks_run_once() -> None:
    seen: list[Any] = []

    def callback(writer: SSEWriter) -> None:
        writer.on_close(lambda: seen.append("closed"))
        writer.send_event("one")
        seen.append(writer.event_count)

    with TestClient(sse_app(callback)).stream("GET", "/s") as stream:
        assert [e.data for e in stream.iter_events()] == ["one"]
    assert seen == [1, "closed"]


def test_writer_in_callback_after_close_raises_writer_closed() -> None:
    errors: list[BaseException] = []

    def callback(writer: SSEWriter) -> None:
        writer.close()
        try:
            writer.send_event("x")
        except WriterClosed as exc:
            errors.append(exc)
        try:
            writer.event.set_header("x-late", "1")
        except ResponseAlreadySent as exc:
            errors.append(exc)
        try:
            writer.event.start_sse()
        except SSEAlreadyStarted as exc:
            errors.append(exc)
        try:
            writer.event.set_stream_callback(callback)
        except ResponseAlreadySent as exc:
            errors.append(exc)

    response = TestClient(sse_app(callback)).get("/s")
    assert response.body == b""
    assert [type(e) for e in errors] == [
        WriterClosed,
        ResponseAlreadySent,
        SSEAlreadyStarted,
        ResponseAlreadySent,
    ]


def test_start_sse_without_callback_sends_head_and_ends() -> None:
    app = H3()

    @app.get("/s")
    def stream(event: H3Event) -> None:
        event.start_sse(status=201)

    response = TestClient(app).get("/s")
    assert response.status == 201 and response.body == b""
    assert response.headers.get("content-type") == "text/event-stream; charset=utf-8"


def test_head_request_gets_no_stream() -> None:
    ran: list[int] = []
    response = TestClient(sse_app(lambda w: ran.append(1))).head("/s")
    assert response.status == 200 and response.body == b"" and ran == []


def test_returning_a_value_after_start_sse_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    app = H3()

    @app.get("/s")
    def stream(event: H3Event) -> str:
        event.start_sse()
        return "not a stream"

    with caplog.at_level(logging.ERROR, "h3green"):
        assert TestClient(app).get("/s").status == 500
    assert "must return None or an EventStream" in caplog.text


def test_http10_client_gets_a_close_delimited_stream() -> None:
    def callback(writer: SSEWriter) -> None:
        writer.send_event("a")
        writer.send_event("b")

    response = TestClient(sse_app(callback)).get("/s", http_version="1.0")
    assert response.status == 200
    assert "transfer-encoding" not in response.headers and "content-length" not in response.headers
    assert response.body == b"data: a\n\ndata: b\n\n"


def test_callback_exception_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    closed: list[int] = []

    def callback(writer: SSEWriter) -> None:
        writer.on_close(lambda: closed.append(1))
        writer.send_event("before")
        raise KeyError("callback bug")

    client = TestClient(sse_app(callback))
    with caplog.at_level(logging.ERROR, "h3green"), client.stream("GET", "/s") as stream:
        # The body ends properly (chunked terminator), after the event that was sent.
        assert [e.data for e in stream.iter_events()] == ["before"]
    assert closed == [1]
    record = next(r for r in caplog.records if "callback" in r.getMessage())
    assert record.exc_info is not None and "callback bug" in caplog.text


def test_event_stream_return_value() -> None:
    app = H3()

    @app.get("/gen")
    def gen(event: H3Event) -> EventStream:
        return EventStream(iter([SSEEvent("x", event="e", id="1", retry=10), "plain", {"k": 1}]))

    with TestClient(app).stream("GET", "/gen") as stream:
        events = list(stream.iter_events())
    assert [(e.event, e.data, e.id) for e in events] == [
        ("e", "x", "1"),
        ("message", "plain", "1"),
        ("message", '{"k":1}', "1"),
    ]
    assert events[0].retry == 10


def test_client_disconnect_kills_callback_and_later_writes_raise() -> None:
    state: dict[str, Any] = {}
    started = gevent.event.Event()

    def callback(writer: SSEWriter) -> None:
        state["writer"] = writer
        writer.on_close(lambda: state.setdefault("closed", 0))
        try:
            writer.send_event("hi")
            started.set()
            gevent.sleep(30)
        finally:
            state["finally"] = True

    with TestClient(sse_app(callback)).stream("GET", "/s") as stream:
        assert next(stream.iter_events()).data == "hi"
        assert started.wait(2)
    # Leaving the block disconnected and joined the server greenlet.
    assert state.get("finally") is True and "closed" in state
    writer = state["writer"]
    assert not writer.is_active
    with pytest.raises(ConnectionLost):
        writer.send_event("late")


# -- heartbeat ------------------------------------------------------------------------------


def heartbeat_lines(client: TestClient, path: str, count: int) -> list[str]:
    with client.stream("GET", path) as stream:
        lines = []
        for line in stream.iter_lines():
            lines.append(line)
            if len(lines) >= count:
                break
        return lines


def test_heartbeat_comment_when_idle() -> None:
    app = sse_app(lambda w: gevent.sleep(5))
    start = gevent.get_hub().loop.now()
    lines = heartbeat_lines(TestClient(app, sse_heartbeat=0.05), "/s", 3)
    elapsed = gevent.get_hub().loop.now() - start
    assert lines == [": "] * 3
    assert 0.1 <= elapsed < 2


def test_per_stream_heartbeat_overrides_server() -> None:
    app = sse_app(lambda w: gevent.sleep(5), heartbeat=0.03)
    lines = heartbeat_lines(TestClient(app, sse_heartbeat=0), "/s", 2)
    assert len(lines) == 2 and all(line.startswith(":") for line in lines)


def test_heartbeat_zero_turns_it_off() -> None:
    def callback(writer: SSEWriter) -> None:
        gevent.sleep(0.2)
        writer.send_event("only")

    for app, options in (
        (sse_app(callback, heartbeat=0), {"sse_heartbeat": 0.02}),
        (sse_app(callback), {"sse_heartbeat": 0}),
    ):
        response = TestClient(app, **options).get("/s")
        assert response.body == b"data: only\n\n"


def test_heartbeat_not_sent_while_events_flow() -> None:
    def callback(writer: SSEWriter) -> None:
        for i in range(8):
            writer.send_event(str(i))
            gevent.sleep(0.02)

    response = TestClient(sse_app(callback), sse_heartbeat=0.06).get("/s")
    assert b":" not in response.body.replace(b"data:", b"")


def test_finish_failure_still_ends_the_stream() -> None:
    class Failing(FakeTransport):
        def finish(self) -> None:
            raise ConnectionLost("gone while closing")

    writer = make_writer(Failing())
    closed: list[int] = []
    writer.on_close(lambda: closed.append(1))
    writer.close()
    assert not writer.is_active and closed == [1]


def test_drop_on_a_transport_without_abort() -> None:
    class Minimal:
        def send(self, payload: bytes) -> None:
            pass

        def finish(self) -> None:
            pass

    writer = make_writer(Minimal())
    writer.drop()
    with pytest.raises(BackpressureDetected):
        writer.send_event("x")


def test_sse_error_from_an_active_writer_is_a_bug(caplog: pytest.LogCaptureFixture) -> None:
    def callback(writer: SSEWriter) -> None:
        writer.send_event("ok")
        raise WriterClosed("raised by the callback itself, not by this writer")

    with caplog.at_level(logging.ERROR, "h3green"):
        response = TestClient(sse_app(callback)).get("/s")
    assert response.body == b"data: ok\n\n"
    assert "SSE stream callback" in caplog.text and "raised by the callback itself" in caplog.text


def test_response_helpers_after_start_sse_raise(caplog: pytest.LogCaptureFixture) -> None:
    from h3green import html, redirect

    app = H3()

    @app.get("/redirect")
    def to_redirect(event: H3Event) -> Any:
        event.start_sse()
        return redirect("/elsewhere")

    @app.get("/html")
    def to_html(event: H3Event) -> Any:
        event.start_sse()
        return html("<p>")

    client = TestClient(app)
    with caplog.at_level(logging.ERROR, "h3green"):
        assert client.get("/redirect").status == 500
        assert client.get("/html").status == 500
    assert "must return None or an EventStream, not a Response" in caplog.text


def test_event_stream_generator_cleanup_runs_when_the_client_leaves() -> None:
    cleaned = gevent.event.Event()

    def events() -> Any:
        try:
            yield "first"
            gevent.sleep(30)
            yield "never"  # pragma: no cover - the client leaves first
        finally:
            cleaned.set()

    app = H3()

    @app.get("/gen")
    def gen(event: H3Event) -> EventStream:
        return EventStream(events())

    with TestClient(app).stream("GET", "/gen") as stream:
        assert next(stream.iter_events()).data == "first"
    assert cleaned.wait(1)
