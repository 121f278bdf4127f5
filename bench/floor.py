"""The floor reference: a gevent StreamServer answering a canned reply, with no parsing.

Each request (a GET without a body: everything up to a blank line) gets a prebuilt
response: the hello one, or the json-params one when the request line starts with
``GET /u``. No HTTP parser, no routing, no JSON encoding: what is left is gevent's
accept/recv/send and the connection's greenlet, the cost every gevent server pays.

    python bench/floor.py PORT
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from apps import HELLO, user_record  # noqa: E402
from gevent.server import StreamServer  # noqa: E402


def _canned(ctype: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s" % (ctype, len(body), body)


HELLO_REPLY = _canned(b"text/plain", HELLO)
JSON_REPLY = _canned(
    b"application/json", json.dumps(user_record("42", "name,email"), separators=(",", ":")).encode()
)


def handle(sock: socket.socket, _addr: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pending = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            *requests, pending = (pending + data).split(b"\r\n\r\n")
            if requests:
                sock.sendall(
                    b"".join(JSON_REPLY if r.startswith(b"GET /u") else HELLO_REPLY for r in requests)
                )
    except OSError:
        return
    finally:
        sock.close()


if __name__ == "__main__":
    server = StreamServer(("127.0.0.1", int(sys.argv[1])), handle, backlog=2048)
    server.serve_forever()
