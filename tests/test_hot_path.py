"""The hot path's shortcuts answer exactly as the general path does (framing, sends)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from h3green import H3, Response
from h3green._connection import Connection
from h3green._h1.framing import DONE, ResponseFramer
from h3green._respond import send_response
from h3green._wire import send_all
from h3green.config import Config
from h3green.datastructures import Headers, QueryParams, RequestHeaders
from h3green.event import H3Event
from h3green.router import Router
from h3green.testing import _ClientConnection

LINES = b"content-type: text/plain\r\n"


def framer(method: bytes = b"GET", version: str = "1.1", closes: bool = False) -> ResponseFramer:
    out = ResponseFramer()
    out.request(method, version, closes)
    return out


def test_fixed_response_in_one_piece() -> None:
    f = framer()
    data = f.fixed(200, LINES, b"hi", False)
    assert data == b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nhi"
    assert f.state == DONE and f.done
    with pytest.raises(RuntimeError, match="already started"):
        f.fixed(200, LINES, b"hi", False)


CASES = [
    # (method, version, the request asks to close, the server closes, status, bytes)
    (b"HEAD", "1.1", False, False, 200, b"HTTP/1.1 200 OK\r\n" + LINES + b"content-length: 2\r\n\r\n"),
    (b"GET", "1.1", False, False, 204, b"HTTP/1.1 204 No Content\r\n" + LINES + b"\r\n"),
    (b"GET", "1.1", False, False, 304, b"HTTP/1.1 304 Not Modified\r\n" + LINES + b"\r\n"),
    (
        b"GET",
        "1.0",
        True,
        False,
        200,
        b"HTTP/1.1 200 OK\r\n" + LINES + b"content-length: 2\r\nconnection: close\r\n\r\nhi",
    ),
    (
        b"GET",
        "1.1",
        False,
        True,
        404,
        b"HTTP/1.1 404 Not Found\r\n" + LINES + b"content-length: 2\r\nconnection: close\r\n\r\nhi",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_fixed_response_framing(case: tuple[bytes, str, bool, bool, int, bytes]) -> None:
    method, version, closes, close, status, expected = case
    f = framer(method, version, closes)
    assert f.fixed(status, LINES, b"hi", close) == expected
    assert f.done is not (closes or close)


def test_fixed_leaves_connect_and_unknown_statuses_to_head() -> None:
    assert framer(b"CONNECT").fixed(200, LINES, b"", False) is None
    assert framer().fixed(299, LINES, b"", False) is None
    assert ResponseFramer().fixed(400, LINES, b"x", False) is not None  # no request understood
    unread = ResponseFramer()
    assert unread.fixed(400, LINES, b"x", False).endswith(b"connection: close\r\n\r\nx")  # type: ignore[union-attr]


def exchange(app: H3, request: bytes) -> bytes:
    """The raw bytes the server writes for *request*, up to its closing the connection."""
    app.freeze()
    conn = _ClientConnection(app, Config(access_log=False), "127.0.0.1")
    conn.sock.inbound.put(request)
    raw = b""
    conn.server.join(timeout=5)
    while not conn.sock.outbound.empty():
        raw += conn.sock.outbound.get()
    return raw


def test_a_connection_field_of_the_handler_goes_through_head() -> None:
    app = H3()
    app.get("/", lambda event: Response("bye", headers={"connection": "close"}))
    raw = exchange(app, b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200 OK") == 1  # closed after the first
    assert b"connection: close\r\n" in raw and raw.endswith(b"\r\n\r\nbye")


def test_a_status_without_a_reason_goes_through_head() -> None:
    app = H3()
    app.get("/", lambda event: Response("odd", status=299))
    raw = exchange(app, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 299 \r\n") and raw.endswith(b"\r\n\r\nodd")


class PartialSocket:
    """Takes *first* bytes of the first send (or none: EAGAIN), then everything."""

    def __init__(self, first: int | None) -> None:
        self.first = first
        self.timeout: float | None = None
        self.out: list[bytes] = []
        self.sendall_timeout: Any = "unset"

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def send(self, data: bytes, flags: int = 0, timeout: float | None = None) -> int:
        if self.first is None:
            raise BlockingIOError
        self.out.append(bytes(data[: self.first]))
        return self.first

    def sendall(self, data: Any) -> None:
        self.sendall_timeout = self.timeout
        self.out.append(bytes(data))


@pytest.mark.parametrize("first", [None, 3])
def test_a_send_that_does_not_fit_waits_with_the_write_timeout(first: int | None) -> None:
    sock = PartialSocket(first)
    conn = Connection(sock, ("127.0.0.1", 1), H3(), Config(access_log=False))
    conn.send(b"0123456789", 7.0)
    assert b"".join(sock.out) == b"0123456789"
    assert sock.sendall_timeout == 7.0
    sock = PartialSocket(first)
    send_all(sock, b"abcdef")
    assert b"".join(sock.out) == b"abcdef"


class BrokenSocket(PartialSocket):
    def send(self, data: bytes, flags: int = 0, timeout: float | None = None) -> int:
        raise BrokenPipeError


@pytest.mark.parametrize("headers", [None, {"connection": "close"}])
def test_a_failed_write_ends_the_connection(headers: dict[str, str] | None) -> None:
    conn = Connection(BrokenSocket(0), ("127.0.0.1", 1), H3(), Config(access_log=False))
    driver = conn.driver
    driver.receive_data(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    head: Any = driver.next_event()
    driver.next_event()
    event = H3Event(head.method, head.target, RequestHeaders(head.headers))
    assert send_response(conn, event, Response("x", headers=headers)) is False
    assert not driver.can_reuse


@given(st.text(alphabet="ab=&;+%2 ", max_size=12))
def test_query_split_equals_parse_qsl(query: str) -> None:
    assert QueryParams.parse(query).items() == parse_qsl(query, keep_blank_values=True)


def test_request_headers_decode_on_first_use() -> None:
    headers = RequestHeaders([(b"host", b"t"), (b"x-name", b"caf\xe9")])
    assert headers._raw is not None
    assert headers["X-Name"] == "café"
    assert headers._raw is None
    assert headers == Headers([("host", "t"), ("x-name", "café")])
    assert headers != QueryParams([("host", "t"), ("x-name", "café")])
    headers.set("host", "u")
    assert headers.items() == [("x-name", "café"), ("host", "u")]
    replaced = RequestHeaders([(b"a", b"1")])
    replaced._items = [("b", "2")]
    assert replaced.items() == [("b", "2")]


SEGMENTS = st.sampled_from(["a", "b", ":x", ":y", "*", "**"])


@given(
    st.lists(st.tuples(st.sampled_from(["GET", "POST"]), st.lists(SEGMENTS, max_size=3)), max_size=6),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=4),
    st.sampled_from(["GET", "POST", "HEAD"]),
)
def test_router_walk_agrees_with_the_full_search(
    routes: list[tuple[str, list[str]]], path: list[str], method: str
) -> None:
    router: Router[str] = Router()
    for i, (route_method, segments) in enumerate(routes):
        if "**" in segments[:-1] or len(set(segments)) < len(segments):
            continue  # not a valid pattern
        router.add(route_method, "/" + "/".join(segments), f"h{i}")
    full = "/" + "/".join(path)
    match = router.match(method, full)
    if match.handler is not None and not router._static.get(full):
        reference = router._search(router._root, path, 0, method, [])
        assert reference is not None
        assert (match.handler, match.params) == (reference.handler, reference.params)
