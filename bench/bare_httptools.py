"""The ceiling reference: a gevent StreamServer with a bare httptools loop and no framework.

It parses with httptools (llhttp), as h3green does by default, and answers the benchmark's
two endpoints with as little else as possible: no routing table, no event object, no
header validation or limits, a response head joined by hand. It makes the same system
calls per request as h3green, so ``h3green / bare httptools`` says what the framework's own
Python costs on top of the parser and the sockets.

    python bench/bare_httptools.py PORT
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import httptools  # noqa: E402
from apps import HELLO, user_record  # noqa: E402
from gevent.server import StreamServer  # noqa: E402


def _response(status: bytes, ctype: bytes, body: bytes) -> bytes:
    return b"".join(
        (b"HTTP/1.1 ", status, b"\r\ncontent-type: ", ctype, b"\r\ncontent-length: ",
         str(len(body)).encode(), b"\r\n\r\n", body)
    )  # fmt: skip


def respond(url: bytes) -> bytes:
    parsed = httptools.parse_url(url)
    path = parsed.path
    if path == b"/":
        return _response(b"200 OK", b"text/plain", HELLO)
    if path.startswith(b"/users/") and path.count(b"/") == 2:
        query = (parsed.query or b"").decode("latin-1")
        fields = parse_qs(query).get("fields", [None])[-1]
        body = json.dumps(user_record(path[7:].decode("latin-1"), fields), separators=(",", ":")).encode()
        return _response(b"200 OK", b"application/json", body)
    return _response(b"404 Not Found", b"text/plain", b"")


class _Protocol:
    """httptools' callbacks: collect the URL, queue one response per complete request."""

    __slots__ = ("out", "url")

    def __init__(self) -> None:
        self.url = b""
        self.out: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url += url  # may arrive in pieces

    def on_message_complete(self) -> None:
        self.out.append(respond(self.url))
        self.url = b""


def handle(sock: socket.socket, _addr: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    protocol = _Protocol()
    parser = httptools.HttpRequestParser(protocol)
    out = protocol.out
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            parser.feed_data(data)
            if out:
                sock.sendall(out[0] if len(out) == 1 else b"".join(out))
                out.clear()
                if not parser.should_keep_alive():
                    return
    except (OSError, httptools.HttpParserError):
        return
    finally:
        sock.close()


if __name__ == "__main__":
    server = StreamServer(("127.0.0.1", int(sys.argv[1])), handle, backlog=2048)
    server.serve_forever()
