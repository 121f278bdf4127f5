"""TestClient (point 10): every method, request options, and the response object."""

from __future__ import annotations

from typing import Any

import gevent
import gevent.event
import pytest

from h3green import H3, H3Event
from h3green.testing import TestClient, TestResponse, _MemorySocket, parse_sse_lines, split_lines


def echo(event: H3Event) -> dict[str, Any]:
    return {
        "method": event.method,
        "target": event.target,
        "headers": [list(item) for item in event.headers.items()],
        "body": event.read_body().decode("latin-1"),
    }


@pytest.fixture
def client() -> TestClient:
    app = H3()
    app.all("/echo", echo)
    return TestClient(app)


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete", "options"])
def test_each_method_helper(client: TestClient, method: str) -> None:
    res = getattr(client, method)("/echo")
    assert isinstance(res, TestResponse)
    assert res.status == res.status_code == 200
    assert res.reason == "OK"
    assert res.http_version == "1.1"
    assert res.json()["method"] == method.upper()


def test_head_helper(client: TestClient) -> None:
    res = client.head("/echo")
    assert (res.status, res.body) == (200, b"")
    assert int(res.headers["content-length"]) > 0


def test_request_with_lowercase_method(client: TestClient) -> None:
    assert client.request("post", "/echo").json()["method"] == "POST"


def test_json_option(client: TestClient) -> None:
    body = client.post("/echo", json={"a": 1}).json()
    assert body["body"] == '{"a": 1}'
    headers = dict(map(tuple, body["headers"]))
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body["body"]))
    assert headers["host"] == "testserver"


def test_json_option_keeps_a_given_content_type(client: TestClient) -> None:
    body = client.post("/echo", json=[1], headers={"Content-Type": "application/vnd.x+json"}).json()
    assert ["content-type", "application/vnd.x+json"] in body["headers"]


def test_data_options(client: TestClient) -> None:
    form = client.post("/echo", data={"a": "1", "b": ["2", "3"]}).json()
    assert form["body"] == "a=1&b=2&b=3"
    assert ["content-type", "application/x-www-form-urlencoded"] in form["headers"]
    assert client.post("/echo", data="text é").json()["body"] == "text é".encode().decode("latin-1")
    assert client.post("/echo", data=b"\x01\x02").json()["body"] == "\x01\x02"
    assert client.post("/echo", data=bytearray(b"ba")).json()["body"] == "ba"


def test_headers_and_params_options(client: TestClient) -> None:
    body = client.get(
        "/echo?x=1", headers=[("X-Multi", "1"), ("X-Multi", "2"), ("Host", "example.org")], params={"y": "2"}
    ).json()
    assert body["target"] == "/echo?x=1&y=2"
    assert ["x-multi", "1"] in body["headers"] and ["x-multi", "2"] in body["headers"]
    assert ["host", "example.org"] in body["headers"]
    assert client.get("/echo", params={"q": "a b"}).json()["target"] == "/echo?q=a+b"


def test_response_accessors() -> None:
    app = H3()
    app.get("/", lambda e: "héllo")
    res = TestClient(app).get("/")
    assert res.body == res.content == "héllo".encode()
    assert res.text == "héllo"
    assert repr(res).startswith("<TestResponse 200 b'h")
    with pytest.raises(ValueError):
        res.json()


def test_streaming_response_reads() -> None:
    app = H3()
    app.get("/", lambda e: iter([b"line 1\r\nline", b" 2\nlast"]))
    client = TestClient(app)
    with client.stream("GET", "/") as stream:
        assert stream.status == stream.status_code == 200
        assert stream.headers["transfer-encoding"] == "chunked"
        assert list(stream.iter_lines()) == ["line 1", "line 2", "last"]
    with client.stream("GET", "/") as stream:
        assert stream.read() == b"line 1\r\nline 2\nlast"


def test_timeout_when_the_app_never_answers() -> None:
    release = gevent.event.Event()
    ended: list[bool] = []

    def hangs(event: H3Event) -> str:
        try:
            release.wait(5)
        finally:
            ended.append(True)
        return "late"  # pragma: no cover - killed first

    app = H3()
    app.get("/", hangs)
    client = TestClient(app, timeout=0.05)
    with pytest.raises(TimeoutError, match=r"no response from the app within 0\.05 s"):
        client.get("/")
    # The server side was ended with the failed request, not left waiting.
    assert ended == [True]


def test_form_data_keeps_a_given_content_type(client: TestClient) -> None:
    body = client.post("/echo", data={"a": "1"}, headers={"content-type": "text/x-form"}).json()
    assert ["content-type", "text/x-form"] in body["headers"]
    assert body["body"] == "a=1"


def test_memory_socket_behaves_like_a_socket() -> None:
    sock = _MemorySocket()
    sock.inbound.put(b"abcdef")
    assert sock.recv(4) == b"abcd"
    assert sock.recv(4) == b"ef"  # the rest of the pending piece, no new get
    sock.sendall(b"")  # an empty write sends nothing
    sock.sendall(b"out")
    assert sock.outbound.get_nowait() == b"out"
    sock.settimeout(0.01)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.inbound.put(b"")
    assert sock.recv(1) == b"" and sock.recv(1) == b""  # EOF stays EOF
    sock.close()
    sock.close()
    assert sock.outbound.get_nowait() == b"" and sock.outbound.empty()
    with pytest.raises(OSError, match="socket is closed"):
        sock.recv(1)
    with pytest.raises(BrokenPipeError):
        sock.sendall(b"x")


def test_sse_line_parser_follows_the_whatwg_rules() -> None:
    lines = [
        ": comment",
        "data:no space",
        "data:  two spaces",
        "event: custom",
        "id: 7",
        "retry: 1500",
        "unknown: ignored",
        "",
        "data: second",
        "retry: soon",  # not digits: ignored
        "id: bad\x00id",  # NUL: ignored, the last id stays
        "",
        "",  # a blank line without data dispatches nothing
    ]
    first, second = list(parse_sse_lines(iter(lines)))
    assert (first.data, first.event, first.id, first.retry) == ("no space\n two spaces", "custom", "7", 1500)
    assert (second.data, second.event, second.id, second.retry) == ("second", "message", "7", None)
    assert repr(second) == "ServerSentEvent(event='message', data='second', id='7')"
    assert next(parse_sse_lines(iter(['data: {"a": 1}', ""]))).json() == {"a": 1}


@pytest.mark.parametrize(
    ("pieces", "lines"),
    [
        ([b"a\r", b"\nb\n"], ["a", "b"]),  # a CRLF split across two pieces is one break
        ([b"a\r", b"b\r"], ["a", "b"]),  # lone CRs, the last one at the very end
        ([b"caf\xc3", b"\xa9\n"], ["café"]),  # a character split across two pieces
        ([b"x\n\n", b"tail"], ["x", "", "tail"]),
        ([], []),
    ],
)
def test_split_lines_keeps_breaks_and_characters_whole(pieces: list[bytes], lines: list[str]) -> None:
    assert list(split_lines(pieces)) == lines
