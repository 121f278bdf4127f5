"""The ceiling reference: a gevent StreamServer with a bare h11 loop and no framework.

It parses with h11 exactly as h3green does and answers the benchmark's two endpoints with
as little else as possible (no routing table, no event object, no limits beyond h11's), so
``h3green / bare`` says what the framework's own layers cost.

    python bench/bare_h11.py PORT
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import h11  # noqa: E402
from apps import HELLO, user_record  # noqa: E402
from gevent.server import StreamServer  # noqa: E402


def _respond(conn: h11.Connection, target: bytes) -> bytes:
    path, _, query = target.decode("ascii").partition("?")
    if path == "/":
        body, ctype = HELLO, b"text/plain"
    elif path.startswith("/users/"):
        fields = parse_qs(query).get("fields", [None])[-1]
        body = json.dumps(user_record(path[7:], fields), separators=(",", ":")).encode()
        ctype = b"application/json"
    else:
        body, ctype = b"", b"text/plain"
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    status = 200 if body else 404
    return (
        conn.send(h11.Response(status_code=status, headers=headers))
        + conn.send(h11.Data(data=body))
        + conn.send(h11.EndOfMessage())
    )


def handle(sock: socket.socket, _addr: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h11.Connection(h11.SERVER)
    target = b"/"
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                conn.receive_data(data)
                if not data:
                    return
            elif type(event) is h11.Request:
                target = event.target
            elif type(event) is h11.EndOfMessage:
                sock.sendall(_respond(conn, target))
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
            elif type(event) is h11.ConnectionClosed:
                return
    except (OSError, h11.ProtocolError):
        return
    finally:
        sock.close()


if __name__ == "__main__":
    server = StreamServer(("127.0.0.1", int(sys.argv[1])), handle, backlog=2048)
    server.serve_forever()
