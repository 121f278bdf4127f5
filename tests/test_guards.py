"""The byte-level guards both drivers run before their parser (``h3green._h1.guards``),
and the drivers' use of them, without sockets (test_hostile.py has the conversations)."""

from __future__ import annotations

import pytest

from h3green._h1 import NEED_DATA, Body, ClientClosed, EndOfBody, ProtocolError, RequestHead
from h3green._h1.guards import MAX_EMPTY_LINES, ChunkLines, EmptyLines
from h3green._h1.h11_driver import H11Driver
from h3green._h1.httptools_driver import HttptoolsDriver

DRIVERS = [H11Driver, HttptoolsDriver]


def test_empty_lines_are_dropped_across_reads() -> None:
    empty = EmptyLines()
    assert empty.strip(b"\r\n\n\r") == b""
    assert empty.partial == b"\r"
    assert empty.strip(b"\nGET") == b"GET"
    assert empty.partial == b""
    empty.reset()
    assert empty.strip(b"\r\n" * MAX_EMPTY_LINES + b"G") == b"G"


@pytest.mark.parametrize(
    ("reads", "message"),
    [
        ([b"\r\n" * (MAX_EMPTY_LINES + 1)], "too many empty lines before the request line"),
        ([b"\rX"], "malformed request line"),
        ([b"\r", b"X"], "malformed request line"),
    ],
)
def test_empty_lines_refused(reads: list[bytes], message: str) -> None:
    empty = EmptyLines()
    with pytest.raises(ProtocolError, match=message) as info:
        for data in reads:
            empty.strip(data)
    assert info.value.status == 400


def test_chunk_lines_are_given_to_the_parser_as_the_size_alone() -> None:
    chunks = ChunkLines(100)
    out, rest = chunks.filter(b'5 ; a = "x\\"y" ;b\r\nhel')
    assert (out, rest, chunks.done) == (b"5\r\nhel", b"", False)
    out, rest = chunks.filter(b"lo\r")
    assert (out, chunks.partial) == (b"lo", b"\r")
    out, rest = chunks.filter(b"\n00;x=y\r\nX: 1\r\n\r\nGET")
    assert (out, rest, chunks.done) == (b"\r\n00\r\n", b"X: 1\r\n\r\nGET", True)


def test_chunk_line_in_pieces_is_held_back() -> None:
    chunks = ChunkLines(100)
    assert chunks.filter(b"3;na") == (b"", b"")
    assert chunks.partial == b"3;na"
    assert chunks.filter(b"me\r\nabc\r\n") == (b"3\r\nabc\r\n", b"")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"0 \r\n", "malformed chunk size"),
        (b"5;\r\n", "malformed chunk size"),
        (b"5;a\rb\r\n", "malformed chunk size"),
        (b"5\n", "malformed chunk size"),
        (b"1" * 17 + b"\r\n", "malformed chunk size"),
        (b"3\r\nabcX", "malformed chunk: missing CRLF after the data"),
        (b"5;" + b"e" * 200, "chunk size line or trailer section too long"),
        (b"5;" + b"e " * 100 + b"\r\n", "chunk size line or trailer section too long"),
    ],
)
def test_chunk_lines_refused(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        ChunkLines(100).filter(data)


def events(driver: H11Driver | HttptoolsDriver) -> list[object]:
    out: list[object] = []
    while (event := driver.next_event()) is not NEED_DATA:
        out.append(event)
        if isinstance(event, EndOfBody | ClientClosed):
            break
    return out


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_held_bytes_count_as_trailing_data(driver_class: type[H11Driver | HttptoolsDriver]) -> None:
    driver = driver_class()
    driver.receive_data(b"\r\n\r")
    assert driver.next_event() is NEED_DATA
    assert driver.trailing_data == (b"\r", False)
    driver.receive_data(b"\nPOST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2;ext")
    head = driver.next_event()
    assert isinstance(head, RequestHead) and head.method == "POST"
    assert driver.next_event() is NEED_DATA
    assert driver.trailing_data[0].endswith(b"2;ext")
    driver.receive_data(b"\r\nhi\r\n0\r\n\r\n")
    body = events(driver)
    assert [e.data for e in body if isinstance(e, Body)] == [b"hi"]
    assert isinstance(body[-1], EndOfBody)


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_extension_method_in_pieces(driver_class: type[H11Driver | HttptoolsDriver]) -> None:
    driver = driver_class()
    driver.receive_data(b"FR")
    assert driver.next_event() is NEED_DATA
    assert driver.trailing_data == (b"FR", False)
    driver.receive_data(b"OB /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok")
    head, body, end = events(driver)
    assert isinstance(head, RequestHead) and (head.method, head.target) == ("FROB", "/x")
    assert isinstance(body, Body) and body.data == b"ok"
    assert isinstance(end, EndOfBody)


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_client_closing_mid_method_is_a_400(driver_class: type[H11Driver | HttptoolsDriver]) -> None:
    driver = driver_class()
    driver.receive_data(b"FRO")
    assert driver.next_event() is NEED_DATA
    driver.receive_data(b"")
    with pytest.raises(ProtocolError) as info:
        driver.next_event()
    assert info.value.status == 400
    with pytest.raises(ProtocolError):  # asked again, raised again
        driver.next_event()
    assert driver.client_failed


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_bad_chunk_line_fails_the_client(driver_class: type[H11Driver | HttptoolsDriver]) -> None:
    driver = driver_class()
    driver.receive_data(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n")
    assert isinstance(driver.next_event(), RequestHead)
    with pytest.raises(ProtocolError, match="malformed chunk size"):
        driver.next_event()
    with pytest.raises(ProtocolError, match="malformed chunk size"):
        driver.next_event()
    assert driver.client_failed and not driver.request_done


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_clean_close_between_requests(driver_class: type[H11Driver | HttptoolsDriver]) -> None:
    driver = driver_class()
    driver.receive_data(b"\r\n")
    driver.receive_data(b"")
    assert isinstance(driver.next_event(), ClientClosed)


@pytest.mark.parametrize("driver_class", DRIVERS)
def test_endless_extension_method_is_a_414(driver_class: type[H11Driver | HttptoolsDriver]) -> None:
    driver = driver_class(max_request_line=100, max_header_bytes=100)
    for _ in range(3):
        driver.receive_data(b"FROB" * 25)
        try:
            event = driver.next_event()
        except ProtocolError as exc:
            assert exc.status == 414
            return
        assert event is NEED_DATA
    raise AssertionError("no 414")
