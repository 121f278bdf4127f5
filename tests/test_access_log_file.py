"""``Config.access_log_file``: access lines formatted once, written in batches."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import RawClient, wait_until

from h3green import H3, Config, Server
from h3green._accesslog import FLUSH_BYTES, AccessLogFile, access_log_file, flush_all

pytestmark = pytest.mark.live

app = H3()
app.get("/", lambda event: "hi")

LINE = re.compile(r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "(.*)" (\d{3}) (\S+)')


@contextmanager
def serving(**options: object) -> Iterator[Server]:
    server = Server(app, port=0, **options)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=2)


def lines(path: Path) -> list[tuple[str, ...]]:
    text = path.read_text() if path.exists() else ""
    return [LINE.fullmatch(line).groups() for line in text.splitlines()]  # type: ignore[union-attr]


def test_lines_reach_the_file_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    with serving(access_log=True, access_log_file=str(path)) as server, RawClient(server.address) as client:
        client.send(b"GET /?a=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /none HTTP/1.1\r\nHost: t\r\n\r\n")
        assert client.response().status == 200  # type: ignore[union-attr]
        none = client.response()
        assert none is not None and none.status == 404
        client.send(b"\x00 bad\r\n\r\n")
        assert client.response().status == 400  # type: ignore[union-attr]
    # Nobody flushes: the hub timer does, a second after the first line.
    wait_until(lambda: len(lines(path)) == 3)
    assert lines(path) == [
        ("GET /?a=1 HTTP/1.1", "200", "2"),
        ("GET /none HTTP/1.1", "404", str(len(none.body))),
        ("-", "400", "-"),
    ]


def test_access_log_off_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "off.log"
    with serving(access_log=False, access_log_file=str(path)) as server, RawClient(server.address) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert client.response().status == 200  # type: ignore[union-attr]
    flush_all()
    assert not path.exists()


def test_a_full_buffer_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    log = AccessLogFile(str(path))
    try:
        line_size = len(f'127.0.0.1 - - [{"x" * 26}] "GET / HTTP/1.1" 200 2\n')
        count = FLUSH_BYTES // line_size + 1
        for _ in range(count):
            log.log("127.0.0.1", "GET / HTTP/1.1", 200, 2)
        assert len(lines(path)) == count  # written without the timer
        log.log("127.0.0.1", "GET / HTTP/1.1", 200, 2)
        assert len(lines(path)) == count
    finally:
        log.close()
    assert len(lines(path)) == count + 1


def test_one_file_per_path_and_config_field(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.log")
    assert access_log_file(path) is access_log_file(path)
    assert Config(access_log_file=path).access_log_file == path
    with pytest.raises(TypeError, match=r"access_log_file must be str \| None"):
        Config(access_log_file=1)  # type: ignore[arg-type]
