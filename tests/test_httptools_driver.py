"""The httptools driver (``Config.http_parser="httptools"``): the server over real sockets,
then the driver's own edges, each checked against what ``H11Driver`` answers.

The hostile-input table (test_hostile.py) and the fuzz properties (test_fuzz.py) already
run over both drivers; this module covers the ordinary conversations and the places where
llhttp's push parsing needs care of its own (pipelining in one read, heads in pieces,
upgrades, response framing).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator

import pytest
import test_fuzz as tf
from helpers import RawClient, live_greenlets, wait_until, warm_up
from hypothesis import given
from hypothesis import strategies as st

from h3green import H3, H3Event, Response, Server, SSEWriter
from h3green._h1 import NEED_DATA, PAUSED, Body, ClientClosed, EndOfBody, ProtocolError, RequestHead
from h3green._h1.h11_driver import H11Driver
from h3green._h1.httptools_driver import HttptoolsDriver
from h3green.server import Config, Connection

pytestmark = pytest.mark.live

app = H3()


@app.all("/echo")
def echo(event: H3Event) -> bytes:
    return event.read_body()


@app.get("/ping")
def ping(event: H3Event) -> str:
    return "pong"


@app.get("/empty")
def empty(event: H3Event) -> Response:
    return Response(None, status=204)


@app.get("/stream")
def stream(event: H3Event) -> Response:
    return Response(iter([b"one,", b"two,", b"three"]), media_type="text/plain")


def _count(writer: SSEWriter) -> None:
    with writer:
        for n in range(3):
            writer.send_event(str(n), event="n")


@app.get("/events")
def events(event: H3Event) -> None:
    event.start_sse()
    event.set_stream_callback(_count)


GET = b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    warm_up()
    before = live_greenlets()
    srv = Server(app, port=0, http_parser="httptools", access_log=False, sse_heartbeat=0)
    srv.start()
    yield srv
    srv.stop(1.0)
    wait_until(lambda: live_greenlets() <= before, what=lambda: live_greenlets() - before)


@pytest.fixture
def client(server: Server) -> Iterator[RawClient]:
    with RawClient(server.address) as conn:
        yield conn
    wait_until(lambda: not server.connections, what="the connection to be released")


def test_the_server_runs_the_httptools_driver(server: Server) -> None:
    conn = Connection(socket.socket(), None, app, server.config)
    try:
        assert type(conn.driver) is HttptoolsDriver
    finally:
        conn.sock.close()


def test_keep_alive_serves_requests_in_turn(client: RawClient) -> None:
    for _ in range(3):
        client.send(GET)
        response = client.response()
        assert response is not None and (response.status, response.body) == (200, b"pong")
        assert response.header("connection") is None


def test_pipelined_requests_in_one_write_are_answered_in_order(client: RawClient) -> None:
    post = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
    client.send(GET + post + GET + b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    bodies = []
    for _ in range(4):
        response = client.response()
        assert response is not None and response.status == 200
        bodies.append(response.body)
    assert bodies == [b"pong", b"abc", b"pong", b""]
    assert response is not None and response.header("connection") == "close"
    assert client.closed_by_server(1.0)


def test_http10_gets_a_closing_answer(client: RawClient) -> None:
    client.send(b"GET /ping HTTP/1.0\r\n\r\n")
    response = client.response()
    assert response is not None and (response.status, response.body) == (200, b"pong")
    assert response.header("connection") == "close"
    assert client.closed_by_server(1.0)


def test_http10_streamed_answer_ends_with_the_connection(client: RawClient) -> None:
    client.send(b"GET /stream HTTP/1.0\r\n\r\n")
    response = client.response()
    assert response is not None and response.body == b"one,two,three"
    assert response.header("transfer-encoding") is None and response.header("content-length") is None
    assert response.header("connection") == "close"


def test_chunked_request_body_in_pieces(client: RawClient) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    client.send([head, 0.01, b"3\r\nabc\r\n", 0.01, b"4;ext=1\r\ndefg\r\n", 0.01, b"0\r\nX-T: 1\r\n\r\n"])
    response = client.response()
    assert response is not None and (response.status, response.body) == (200, b"abcdefg")
    client.send(GET)
    follow_up = client.response()
    assert follow_up is not None and follow_up.body == b"pong"


def test_100_continue_is_sent_when_the_body_is_read(client: RawClient) -> None:
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    deadline = time.monotonic() + 2
    assert (client._take_line(deadline), client._take_line(deadline)) == (b"HTTP/1.1 100 Continue", b"")
    client.send(b"hi")
    response = client.response()
    assert response is not None and (response.status, response.body) == (200, b"hi")


def test_head_announces_the_body_it_does_not_send(client: RawClient) -> None:
    client.send(b"HEAD /ping HTTP/1.1\r\nHost: t\r\n\r\n")
    response = client.response(head_only=True)
    assert response is not None and response.header("content-length") == "4"
    client.send(GET)  # nothing followed the head: the next response starts at once
    follow_up = client.response()
    assert follow_up is not None and follow_up.body == b"pong"


def test_head_of_a_stream_is_framed_as_the_get_would_be(client: RawClient) -> None:
    client.send(b"HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    response = client.response(head_only=True)
    assert response is not None and response.header("transfer-encoding") == "chunked"
    client.send(GET)
    follow_up = client.response()
    assert follow_up is not None and follow_up.body == b"pong"


def test_204_has_no_body_and_keeps_the_connection(client: RawClient) -> None:
    client.send(b"GET /empty HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
    response = client.response(head_only=True)
    assert response is not None and response.status == 204
    assert response.header("content-length") is None and response.header("transfer-encoding") is None
    follow_up = client.response()
    assert follow_up is not None and follow_up.body == b"pong"


def test_streamed_response_is_chunked(client: RawClient) -> None:
    client.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    response = client.response()
    assert response is not None and response.header("transfer-encoding") == "chunked"
    assert response.body == b"one,two,three"


def test_sse_stream_then_a_pipelined_request(client: RawClient) -> None:
    client.send(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
    response = client.response()
    assert response is not None and (response.header("content-type") or "").startswith("text/event-stream")
    assert [line for line in response.body.split(b"\n") if line.startswith(b"data:")] == [
        b"data: 0",
        b"data: 1",
        b"data: 2",
    ]
    follow_up = client.response()
    assert follow_up is not None and follow_up.body == b"pong"


def test_bad_request_gets_a_json_400(client: RawClient) -> None:
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 2\r\n\r\n")
    response = client.response()
    assert response is not None and response.status == 400
    assert response.header("connection") == "close" and b'"status":400' in response.body


# -- configuration ---------------------------------------------------------------------


def test_unknown_parser_is_refused() -> None:
    with pytest.raises(ValueError, match="http_parser must be one of h11, httptools, auto, got 'fast'"):
        Config(http_parser="fast")


def test_auto_picks_httptools_when_installed() -> None:
    config = Config(http_parser="auto")
    conn = Connection(socket.socket(), None, app, config)
    try:
        assert type(conn.driver) is HttptoolsDriver
    finally:
        conn.sock.close()
    h11_conn = Connection(socket.socket(), None, app, Config(http_parser="h11"))
    try:
        assert type(h11_conn.driver) is H11Driver
    finally:
        h11_conn.sock.close()


def test_missing_httptools_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import h3green

    monkeypatch.delattr(h3green._h1, "httptools_driver")
    monkeypatch.setitem(sys.modules, "h3green._h1.httptools_driver", None)
    with pytest.raises(ValueError, match="pip install httptools"):
        Config(http_parser="httptools")
    conn = Connection(socket.socket(), None, app, Config(http_parser="auto"))
    try:
        assert type(conn.driver) is H11Driver
    finally:
        conn.sock.close()


# -- the driver against _http11's ------------------------------------------------------

DRIVERS = [pytest.param(H11Driver, id="h11"), pytest.param(HttptoolsDriver, id="httptools")]
LIMITS = {"max_request_line": 100, "max_header_bytes": 200, "max_header_count": 5}


def events_of(driver: object, *pieces: bytes) -> list[object]:
    """Feed *pieces*, collecting event type names until NEED_DATA / PAUSED / an error."""
    out: list[object] = []
    for piece in pieces:
        driver.receive_data(piece)  # type: ignore[attr-defined]
        while True:
            try:
                event = driver.next_event()  # type: ignore[attr-defined]
            except ProtocolError as exc:
                out.append(exc.status)
                return out
            if event is NEED_DATA:
                break
            out.append(event if event is PAUSED else type(event).__name__)
            if event is PAUSED or type(event) is ClientClosed:
                return out
    return out


def respond(driver: object) -> bytes:
    data = driver.head(200, [(b"content-length", b"2")]) + driver.body(b"ok") + driver.end()  # type: ignore[attr-defined]
    return data  # type: ignore[no-any-return]


@pytest.mark.parametrize("driver_class", DRIVERS)
@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ((GET + GET,), ["RequestHead", "EndOfBody", PAUSED]),
        ((GET, b""), ["RequestHead", "EndOfBody", "ClientClosed"]),
        ((b"GET /ping HTTP/1.1\r\nHo", b""), [400]),
        (
            (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab", b""),
            ["RequestHead", "Body", 400],
        ),
        ((b"GET / RTSP/1.0\r\nHost: t\r\n\r\n",), [400]),
        ((b"GET / HTTP/1.1\r\nHost: t\r\nUser-Agent: RTSP/1.0\r\n\r\n",), ["RequestHead", "EndOfBody"]),
        ((b"GET /\r\n\r\n",), [400]),
        ((b"GET / HTTP/3.0\r\nHost: t\r\n\r\n",), [505]),
        ((b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",), [400]),
        ((b"GET / HTTP/1.1\r\nHost: t\r\nX-A: " + b"v" * 400,), [431]),
        ((b"GET / HTTP/1.1\r\nHost: t\r\nX-A: ", b"v" * 200, b"v" * 200), [431]),
        ((b"GET /" + b"a" * 400,), [414]),
        ((b"GET /a", b"a" * 150, b"a" * 200), [414]),
        ((b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X: y\r\n" * 5 + b"\r\n",), [431]),
        ((b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",), [501]),
        (
            (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1;", b"e" * 400),
            ["RequestHead", 400],
        ),
        (
            (
                b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX: ",
                b"v" * 400,
            ),
            ["RequestHead", "Body", 400],
        ),
    ],
)
def test_driver_answers_like_http11(
    driver_class: type, pieces: tuple[bytes, ...], expected: list[object]
) -> None:
    assert events_of(driver_class(**LIMITS), *pieces) == expected


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_pipelined_heads_wait_for_the_next_cycle(driver_class: type) -> None:
    driver = driver_class(**LIMITS)
    head = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"
    assert events_of(driver, head + head + b"GET /y HT") == ["RequestHead", "EndOfBody", PAUSED]
    assert driver.request_done and driver.trailing_data[0]
    respond(driver)
    assert driver.can_reuse
    driver.start_next_cycle()
    assert events_of(driver, b"TP/1.1\r\nHost: t\r\n\r\n") == ["RequestHead", "EndOfBody", PAUSED]
    respond(driver)
    driver.start_next_cycle()
    event = driver.next_event()
    assert type(event) is RequestHead and event.target == "/y"
    assert type(driver.next_event()) is EndOfBody


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_partial_pipelined_head_is_reported_and_bounded(driver_class: type) -> None:
    driver = driver_class(**LIMITS)
    # A head begun in the read that ended the request before it, then grown past the limit.
    assert events_of(driver, GET + b"GET / HTTP/1.1\r\nX-A: v") == ["RequestHead", "EndOfBody", PAUSED]
    respond(driver)
    driver.start_next_cycle()
    assert driver.next_event() is NEED_DATA
    assert driver.trailing_data == (b"GET / HTTP/1.1\r\nX-A: v", False)
    assert events_of(driver, b"v" * 400) == [431]


def test_httptools_partial_head_after_a_body_is_bounded() -> None:
    driver = HttptoolsDriver(**LIMITS)
    post = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab"
    assert events_of(driver, post + b"GET /" + b"a" * 50) == ["RequestHead", "Body", "EndOfBody", PAUSED]
    respond(driver)
    driver.start_next_cycle()
    assert driver.next_event() is NEED_DATA and driver.trailing_data[0]  # the parts seen so far
    assert events_of(driver, b" HTTP/1.1\r\nX-A: " + b"v" * 400) == [431]


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_bytes_nobody_reads_are_counted_not_parsed(driver_class: type) -> None:
    # A stream's watcher feeds what the client sends and bounds it by trailing_data.
    driver = driver_class(**LIMITS)
    events_of(driver, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(3):
        driver.receive_data(b"x" * 1000)
    assert len(driver.trailing_data[0]) >= 2000
    assert type(driver.next_event()) is Body


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_upgrade_is_not_taken_up(driver_class: type) -> None:
    driver = driver_class(**LIMITS)
    upgrade = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    assert events_of(driver, upgrade + GET) == ["RequestHead", "EndOfBody", PAUSED]
    respond(driver)
    driver.start_next_cycle()
    assert events_of(driver) == []
    assert [type(driver.next_event()), type(driver.next_event())] == [RequestHead, EndOfBody]


def test_upgrade_with_a_body_is_refused_by_httptools() -> None:
    # httptools would hand the body back unread as the bytes after an upgrade.
    driver = HttptoolsDriver(**LIMITS)
    upgrade = (
        b"POST / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: x\r\nContent-Length: 2\r\n\r\nab"
    )
    assert events_of(driver, upgrade) == [400]
    assert driver.client_failed and not driver.request_done


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_errors_repeat_and_close(driver_class: type) -> None:
    driver = driver_class(**LIMITS)
    assert events_of(driver, b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n") == [400]
    with pytest.raises(ProtocolError):
        driver.next_event()
    driver.head(400, [(b"content-length", b"0")])
    driver.end()
    assert not driver.can_reuse


@pytest.mark.parametrize("driver_class", DRIVERS)
@pytest.mark.parametrize(
    ("request_bytes", "status", "headers", "keeps"),
    [
        (GET, 200, [], True),
        (GET, 200, [(b"connection", b"keep-alive")], True),
        (GET, 200, [(b"connection", b"keep-alive, close")], False),
        (b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Close\r\n\r\n", 200, [], False),
        (b"GET / HTTP/1.0\r\n\r\n", 200, [(b"connection", b"keep-alive")], False),
        (b"HEAD / HTTP/1.0\r\n\r\n", 200, [], False),
        (GET, 304, [], True),
    ],
)
def test_response_framing_matches_h11(
    driver_class: type, request_bytes: bytes, status: int, headers: list[tuple[bytes, bytes]], keeps: bool
) -> None:
    driver = driver_class(**LIMITS)
    assert events_of(driver, request_bytes)[:2] == ["RequestHead", "EndOfBody"]
    head = driver.head(status, headers).lower()
    assert driver.response_started
    body = (
        driver.body(b"abc") if status == 200 and not request_bytes.startswith((b"HEAD", b"CONNECT")) else b""
    )
    end = driver.end()
    assert driver.can_reuse is keeps
    assert (b"close" in head) is not keeps
    if request_bytes.startswith(b"GET") and status == 200:
        if b"HTTP/1.0" in request_bytes:
            assert (body, end) == (b"abc", b"")
        else:
            assert b"transfer-encoding: chunked" in head and (body, end) == (b"3\r\nabc\r\n", b"0\r\n\r\n")
    else:
        assert b"transfer-encoding" not in head and end == b""


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_response_misuse_raises(driver_class: type) -> None:
    driver = driver_class(**LIMITS)
    events_of(driver, GET)
    driver.head(200, [(b"content-length", b"2")])
    with pytest.raises(Exception, match=r"(?i)too much data"):
        driver.body(b"abc")
    driver = driver_class(**LIMITS)
    events_of(driver, GET)
    driver.head(200, [(b"content-length", b"2")])
    with pytest.raises(Exception, match=r"(?i)too little data"):
        driver.end()
    with pytest.raises(Exception):  # h11 and httptools raise their own types
        driver.head(200, [])
    driver.send_failed()
    assert not driver.can_reuse


def test_httptools_trailers_are_bounded() -> None:
    # h11 takes a whole trailer section of any size that arrives in one read; this driver
    # holds trailer fields to the head limits too.
    driver = HttptoolsDriver(**LIMITS)
    chunked = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert events_of(driver, chunked + b"0\r\nX: " + b"v" * 400 + b"\r\n\r\n") == ["RequestHead", 400]


def test_httptools_answer_to_connect_closes() -> None:
    driver = HttptoolsDriver(**LIMITS)
    assert events_of(driver, b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n")[:2] == ["RequestHead", "EndOfBody"]
    head = driver.head(200, [])
    assert b"connection: close" in head and b"transfer-encoding" not in head
    assert driver.end() == b"" and not driver.can_reuse


def test_httptools_driver_refuses_misuse_in_its_words() -> None:
    driver = HttptoolsDriver(**LIMITS)
    with pytest.raises(RuntimeError, match="no response body"):
        driver.body(b"x")
    with pytest.raises(RuntimeError, match="no response body"):
        driver.end()
    with pytest.raises(RuntimeError, match="cannot carry another request"):
        driver.start_next_cycle()
    assert driver.informational() == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_httptools_events_match_h11_on_a_mixed_conversation() -> None:
    data = (
        b"POST /a?b=c HTTP/1.1\r\nHost: t\r\nX-Pad:  v  \r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    seen = []
    for driver_class in (H11Driver, HttptoolsDriver):
        driver = driver_class(**LIMITS)
        driver.receive_data(data)
        head = driver.next_event()
        assert type(head) is RequestHead
        body = driver.next_event()
        assert type(body) is Body
        seen.append(
            (head.method, head.target, head.headers, head.http_version, head.expects_continue, body.data)
        )
    assert seen[0] == seen[1]


def test_cli_refuses_an_unknown_parser(capsys: pytest.CaptureFixture[str]) -> None:
    from h3green.__main__ import main

    assert main(["examples/hello.py:app", "--http-parser", "fast"]) == 2
    assert "h3green: error: http_parser must be one of h11, httptools, auto" in capsys.readouterr().err


# -- differential: llhttp never accepts what h11 refuses ---------------------------------


def _trace(driver_class: type, pieces: list[bytes]) -> list[object]:
    """What a driver makes of *pieces*: heads, whole bodies, then an end or an error."""
    driver = driver_class(max_request_line=200, max_header_bytes=400, max_header_count=8)
    out: list[object] = []
    body = b""
    try:
        for piece in pieces:
            driver.receive_data(piece)
            while (event := driver.next_event()) is not NEED_DATA:
                if event is PAUSED or type(event) is ClientClosed:
                    return out
                if type(event) is RequestHead:
                    out.append(
                        (
                            event.method,
                            event.target,
                            event.headers,
                            event.http_version,
                            event.expects_continue,
                        )
                    )
                elif type(event) is Body:
                    body += event.data
                else:
                    out.append(body)
                    body = b""
                    driver.head(200, [(b"content-length", b"0")])
                    driver.end()
                    if not driver.can_reuse:
                        return out
                    driver.start_next_cycle()
    except ProtocolError as exc:
        out.append(exc)
    return out


@tf.FUZZ
@given(tf.chunks, st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_httptools_agrees_with_h11_or_is_stricter(parts: list[bytes], cuts: list[int]) -> None:
    pieces = [*tf._splits(b"".join(parts), cuts), b""]
    ours = _trace(H11Driver, pieces)
    fast = _trace(HttptoolsDriver, pieces)
    for mine, theirs in zip(ours, fast, strict=False):
        if isinstance(mine, ProtocolError):
            # RFC 9112 §2.2: llhttp skips an empty line between two requests of one read.
            assert isinstance(theirs, ProtocolError) or mine.message == "no request line received", (
                mine,
                theirs,
            )
            return
        if isinstance(theirs, ProtocolError):
            return  # stricter: see the module docstring of h3green._httptools
        assert mine == theirs
    assert len(ours) == len(fast)


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_next_cycle_needs_a_finished_exchange_and_keeps_the_clients_close(driver_class: type) -> None:
    driver = driver_class(**LIMITS)
    with pytest.raises(RuntimeError, match="cannot carry another request"):
        driver.start_next_cycle()
    assert events_of(driver, GET + b"GET /x") == ["RequestHead", "EndOfBody", PAUSED]
    driver.receive_data(b"")
    respond(driver)
    driver.start_next_cycle()
    # The client closed in the middle of the next head: that head is broken.
    with pytest.raises(ProtocolError) as caught:
        driver.next_event()
    assert caught.value.status == 400
