"""Property tests: arbitrary bytes never make the HTTP layer misbehave.

Two levels: the sans-I/O ``Driver`` (bytes in any split → events or a ``ProtocolError``
with a 4xx/5xx status and a message of our own, nothing else), and the whole server path
(``Connection`` over the in-memory socket of ``h3green.testing``, the same loop a real
socket runs): the output is a sequence of well-formed responses, none a 500, ending in a
clean close; nothing is logged at ERROR; the connection greenlet ends.

The strategy mixes fragments of real requests with random bytes, so most examples get
past the request line into heads, bodies, chunking and pipelining.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import re
from collections.abc import Callable

import gevent
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from h3green import H3, H3Event
from h3green._h1 import (
    NEED_DATA,
    PAUSED,
    Body,
    ClientClosed,
    Driver,
    EndOfBody,
    ProtocolError,
    RequestHead,
)
from h3green._h1.h11_driver import H11Driver
from h3green._h1.httptools_driver import HttptoolsDriver
from h3green.server import Config, Connection
from h3green.testing import _EOF, _MemorySocket

FRAGMENTS = [
    b"GET / HTTP/1.1\r\n",
    b"POST /echo HTTP/1.1\r\n",
    b"HEAD /echo HTTP/1.1\r\n",
    b"GET /echo?x=1 HTTP/1.0\r\n",
    b"Host: t\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Length: 100\r\n",
    b"Content-Length: 3, 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"X-A: b\r\n",
    b" folded\r\n",
    b"\r\n",
    b"\n",
    b"5\r\nhello\r\n",
    b"0\r\n\r\n",
    b"ffffffff\r\n",
    b"hello",
    b"\x00",
    b"\xff\xfe",
    b":",
    b" ",
]

REQUEST_LINES = [f for f in FRAGMENTS if f.endswith(b"HTTP/1.1\r\n") or f.endswith(b"HTTP/1.0\r\n")]
HEADER_LINES = [f for f in FRAGMENTS if b": " in f] + [b" folded\r\n", b"X-Long: " + b"v" * 300 + b"\r\n"]
BODIES = [b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n", b"x" * 100, b"3\r\nab"]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """One request from plausible parts, sometimes mutated."""
    data = draw(st.sampled_from(REQUEST_LINES))
    data += b"".join(draw(st.lists(st.sampled_from(HEADER_LINES), max_size=10)))
    data += b"\r\n" + draw(st.sampled_from(BODIES))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 3))
        data = data[:at] + draw(st.binary(max_size=4)) + data[at + cut :]
    return data


chunks = st.one_of(
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=24)), max_size=24),
    st.lists(requests(), min_size=1, max_size=4),
)
# Modest by default so the suite stays fast; H3GREEN_FUZZ_EXAMPLES=5000 for a long hunt.
EXAMPLES = int(os.environ.get("H3GREEN_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ALLOWED_ERRORS = {400, 413, 414, 431, 501, 505}

# Every property holds for both HTTP/1.1 drivers (Config.http_parser).
DRIVERS = [pytest.param(H11Driver, id="h11"), pytest.param(HttptoolsDriver, id="httptools")]


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@pytest.mark.parametrize("driver_class", DRIVERS)
@FUZZ
@given(chunks, st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_driver_turns_any_bytes_into_events_or_a_protocol_error(
    driver_class: Callable[..., Driver], parts: list[bytes], cuts: list[int]
) -> None:
    driver = driver_class(max_request_line=200, max_header_bytes=400, max_header_count=8)
    data = b"".join(parts)
    pieces = [*_splits(data, cuts), b""]  # b"": the client closes
    try:
        for piece in pieces:
            driver.receive_data(piece)
            while True:
                event = driver.next_event()
                if event is NEED_DATA or type(event) is ClientClosed:
                    break
                if event is PAUSED:
                    return  # pipelined data waits for a response that this test does not send
                if type(event) is RequestHead:
                    assert event.method.isascii() and event.target.isascii()
                    assert len(event.headers) <= 8
                elif type(event) is EndOfBody:
                    head = driver.head(200, [(b"content-length", b"0")]) + driver.end()
                    assert head.startswith(b"HTTP/1.1 200 ")
                    if not driver.can_reuse:
                        return
                    driver.start_next_cycle()
                else:
                    assert type(event) is Body
            if type(event) is ClientClosed:
                return
    except ProtocolError as exc:
        assert exc.status in ALLOWED_ERRORS, exc.status
        assert exc.message.isprintable() and len(exc.message) < 80
        assert "bytearray" not in exc.message and "\\x" not in exc.message


app = H3()


@app.all("/**")
def echo(event: H3Event) -> bytes:
    return event.read_body()


_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")


def _parse_responses(blob: bytes) -> list[int]:
    """Statuses of the responses in *blob*; asserts each is well formed."""
    statuses = []
    pos = 0
    while pos < len(blob):
        match = _STATUS_LINE.match(blob, pos)
        assert match, f"garbage at {pos}: {blob[pos : pos + 60]!r}"
        status = int(match.group(1))
        end = blob.index(b"\r\n\r\n", pos) + 4
        head = blob[match.end() : end].lower()
        pos = end
        if status < 200:
            continue
        statuses.append(status)
        length = re.search(rb"content-length: (\d+)\r\n", head)
        if b"transfer-encoding: chunked" in head:
            while True:
                line_end = blob.index(b"\r\n", pos)
                size = int(blob[pos:line_end].split(b";")[0], 16)
                pos = line_end + 2 + size + 2
                if size == 0:
                    break
        elif length:
            size = int(length.group(1))
            # A HEAD response announces a body it does not carry.
            if not _STATUS_LINE.match(blob, pos) or size == 0:
                pos += size
        else:
            pos = len(blob)
    return statuses


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


CONFIG = Config(
    max_request_line=200,
    max_header_bytes=400,
    max_header_count=8,
    max_body_size=64,
    header_timeout=0.5,
    body_timeout=0.5,
    keepalive_timeout=0.5,
    access_log=False,
)


@pytest.mark.parametrize("http_parser", ["h11", "httptools"])
@FUZZ
@given(chunks)
def test_server_path_answers_any_bytes_with_4xx_or_a_clean_close(
    http_parser: str, parts: list[bytes]
) -> None:
    sock = _MemorySocket()
    for part in parts:
        if part:
            sock.inbound.put(part)
    sock.inbound.put(_EOF)
    errors = _Errors()
    logger = logging.getLogger("h3green")
    logger.addHandler(errors)
    try:
        config = dataclasses.replace(CONFIG, http_parser=http_parser)
        greenlet = gevent.spawn(Connection(sock, ("127.0.0.1", 1), app, config).run)
        greenlet.join(5)
        assert greenlet.dead and greenlet.successful(), greenlet.exception
    finally:
        logger.removeHandler(errors)
    assert sock.closed
    out = []
    while not sock.outbound.empty():
        piece = sock.outbound.get()
        if piece is not _EOF:
            out.append(piece)
    blob = b"".join(out)
    statuses = _parse_responses(blob)
    assert 500 not in statuses
    assert all(s < 400 or s in ALLOWED_ERRORS | {404, 405, 408} for s in statuses), statuses
    for marker in (b"Traceback", b"bytearray", b"h11", b'File "'):
        assert marker not in blob
    assert not [r for r in errors.records if r.levelno >= logging.ERROR], errors.records


def test_driver_sentinels_name_themselves() -> None:
    assert (repr(NEED_DATA), repr(PAUSED)) == ("NEED_DATA", "PAUSED")
