"""Request bodies (point 7): readers, limits, chunked uploads, and reading on demand."""

from __future__ import annotations

from typing import Any

import pytest

from h3green import H3, H3Event, HTTPError
from h3green.datastructures import Headers
from h3green.testing import TestClient


class Pieces:
    """A body source that records how much the event pulled from it."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)
        self.reads = 0

    def read(self) -> bytes:
        self.reads += 1
        return self.pieces.pop(0) if self.pieces else b""


def make_event(*pieces: bytes, headers: dict[str, str] | None = None, limit: int = 100) -> H3Event:
    return H3Event("POST", "/", Headers(headers), body=Pieces(*pieces), max_body_size=limit)


def echo_app() -> H3:
    app = H3()
    app.post("/body", lambda e: e.read_body())
    app.post("/text", lambda e: e.read_text())
    app.post("/json", lambda e: {"got": e.read_json()})
    app.post("/form", lambda e: e.read_form().items())
    app.post("/ignore", lambda e: "did not read")
    return app


def test_read_body_text_json_form() -> None:
    client = TestClient(echo_app())
    assert client.post("/body", data=b"\x00raw").body == b"\x00raw"
    assert client.post("/text", data="héllo").text == "héllo"
    assert client.post("/json", json={"a": [1, None]}).json() == {"got": {"a": [1, None]}}
    res = client.post("/form", data={"name": "Ada L", "tag": ["x", "y"]})
    assert res.json() == [["name", "Ada L"], ["tag", "x"], ["tag", "y"]]


def test_read_text_honours_charset() -> None:
    res = TestClient(echo_app()).post(
        "/text", data="café".encode("latin-1"), headers={"content-type": 'text/plain; charset="latin-1"'}
    )
    assert res.text == "café"


@pytest.mark.parametrize(
    ("data", "ctype", "message"),
    [
        (b"\xff\xfe", "text/plain", "request body is not valid utf-8 text"),
        (b"x", "text/plain; charset=no-such-codec", "request body is not valid no-such-codec text"),
    ],
)
def test_read_text_bad_encoding_is_400(data: bytes, ctype: str, message: str) -> None:
    res = TestClient(echo_app()).post("/text", data=data, headers={"content-type": ctype})
    assert res.status == 400
    assert res.json()["message"] == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{bad", "invalid JSON in request body: Expecting property name enclosed in double quotes"),
        (b"", "request body is empty, expected JSON"),
        (b"  \n", "request body is empty, expected JSON"),
        (b'"\xff"', "invalid JSON in request body"),
    ],
)
def test_bad_json_is_a_clear_400(data: bytes, message: str) -> None:
    res = TestClient(echo_app()).post("/json", data=data, headers={"content-type": "application/json"})
    assert res.status == 400
    assert res.json()["message"].startswith(message)
    assert res.json()["statusText"] == "Bad Request"


def test_form_content_types() -> None:
    client = TestClient(echo_app())
    res = client.post("/form", data=b"a=1", headers={"content-type": "multipart/form-data; boundary=x"})
    assert res.status == 400  # multipart is parsed now (tests/test_multipart.py): this one is malformed
    assert res.json()["message"].startswith("malformed multipart body")
    res = client.post("/form", data=b"{}", headers={"content-type": "application/json"})
    assert (res.status, res.json()["message"]) == (415, "expected a form body, got application/json")
    assert client.post("/form", data=b"a=1&b").json() == [["a", "1"], ["b", ""]]
    assert client.post("/form").json() == []


def test_chunked_request_body() -> None:
    res = TestClient(echo_app()).post(
        "/body", data=b"chunked upload", headers={"transfer-encoding": "chunked"}
    )
    assert (res.status, res.body) == (200, b"chunked upload")


def test_content_length_over_limit_is_413_up_front() -> None:
    client = TestClient(echo_app(), max_body_size=10)
    res = client.post("/body", data=b"x" * 11)
    assert res.status == 413
    assert res.json()["message"] == "request body exceeds 10 bytes"
    assert client.post("/body", data=b"x" * 10).body == b"x" * 10


def test_chunked_over_limit_is_413() -> None:
    client = TestClient(echo_app(), max_body_size=10)
    res = client.post("/body", data=b"y" * 11, headers={"transfer-encoding": "chunked"})
    assert res.status == 413


def test_limit_applies_to_a_handler_that_does_not_read() -> None:
    # No read, no 413: the handler decided without the body.
    res = TestClient(echo_app(), max_body_size=10).post("/ignore", data=b"z" * 50)
    assert (res.status, res.text) == (200, "did not read")


def test_body_is_pulled_only_on_demand() -> None:
    source = Pieces(b"ab", b"cd")
    event = H3Event("POST", "/", Headers(), body=source)
    assert source.reads == 0
    pieces = event.iter_body()
    assert source.reads == 0  # a generator: nothing read until iterated
    assert next(pieces) == b"ab"
    assert source.reads == 1
    assert list(pieces) == [b"cd"]


def test_declared_length_over_limit_reads_nothing() -> None:
    event = make_event(b"x" * 200, headers={"content-length": "200"})
    with pytest.raises(HTTPError, match="request body exceeds 100 bytes") as info:
        event.read_body()
    assert info.value.status == 413
    assert event._body.reads == 0  # type: ignore[attr-defined]


def test_streamed_limit_stops_at_the_piece_that_crosses_it() -> None:
    event = make_event(b"x" * 60, b"x" * 60, b"x" * 60, limit=100)
    with pytest.raises(HTTPError, match="request body exceeds 100 bytes"):
        event.read_body()
    assert event._body.reads == 2  # type: ignore[attr-defined]


def test_read_body_is_cached_and_iter_body_replays_it() -> None:
    event = make_event(b"a", b"b")
    assert event.read_body() == b"ab"
    assert event.read_body() == b"ab"
    assert list(event.iter_body()) == [b"ab"]
    assert make_event(b'{"k":', b"1}").read_json() == {"k": 1}
    empty = make_event()
    assert empty.read_body() == b""
    assert list(empty.iter_body()) == []


def test_iter_body_twice_without_cache_raises() -> None:
    event = make_event(b"a")
    list(event.iter_body())
    with pytest.raises(RuntimeError, match="already consumed by iter_body"):
        list(event.iter_body())


def test_non_numeric_content_length_is_not_trusted() -> None:
    event = make_event(b"abc", headers={"content-length": "lots"})
    assert event.read_body() == b"abc"


def test_streaming_handler_sees_pieces() -> None:
    app = H3()

    @app.post("/count")
    def count(event: H3Event) -> dict[str, Any]:
        sizes = [len(piece) for piece in event.iter_body()]
        return {"total": sum(sizes), "pieces": len(sizes) >= 1}

    res = TestClient(app).post("/count", data=b"q" * 5000, headers={"transfer-encoding": "chunked"})
    assert res.json() == {"total": 5000, "pieces": True}


def test_read_text_finds_charset_among_other_parameters() -> None:
    res = TestClient(echo_app()).post(
        "/text",
        data="naïve".encode("latin-1"),
        headers={"content-type": "text/plain; format=flowed; Charset=latin-1"},
    )
    assert res.text == "naïve"
