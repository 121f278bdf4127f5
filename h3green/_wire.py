"""Small things the server writes on the wire: the Date header, send-all, canned errors."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any, Final

from ._json import json_dumps
from .errors import HTTPError

__all__ = ["OVERLOADED", "RECV_SIZE", "date_header", "date_line", "send_all", "simple_response"]

#: Bytes asked of one ``recv``.
RECV_SIZE: Final = 65536

# PERF: formatting the Date header costs ~5 us; it only changes once a second.
_date_cache: list[Any] = [0, b"", b""]


def _refresh_date(now: int) -> None:
    value = formatdate(now, usegmt=True).encode()
    _date_cache[:] = [now, value, b"date: " + value + b"\r\n"]


def date_header() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _refresh_date(now)
    return _date_cache[1]  # type: ignore[no-any-return]


def date_line() -> bytes:
    """The whole ``date: ...`` header line, CRLF included (cached for the second)."""
    now = int(time.time())
    if now != _date_cache[0]:
        _refresh_date(now)
    return _date_cache[2]  # type: ignore[no-any-return]


def send_all(sock: Any, data: bytes) -> None:
    """``sock.sendall(data)``, waiting (within the socket's timeout) only if it must."""
    # PERF: gevent's sendall makes a getsockopt(SO_SNDBUF) syscall and a few Python calls
    # on every call; a response or event nearly always fits the socket buffer, so one
    # non-blocking send finishes it and sendall only ever sends a remainder (~10% of a
    # keep-alive hello request).
    try:
        sent = sock.send(data, 0, 0.0)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def error_body(status: int, message: str) -> bytes:
    """The JSON body of an error the server answers by itself."""
    return json_dumps(HTTPError(status, message).to_dict())


def simple_response(status: int, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A complete HTTP/1.1 error response, for when no driver can frame one."""
    body = error_body(status, message)
    head = [
        f"HTTP/1.1 {status} {HTTPError(status).status_text}".encode(),
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        *(name + b": " + value for name, value in extra),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


#: The answer past ``max_connections``.
OVERLOADED: Final = simple_response(503, "server is at its connection limit", ((b"retry-after", b"1"),))
