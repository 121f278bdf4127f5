"""``examples/port_flask.py`` end to end over real sockets: Flask under /legacy, SSE natively."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import gevent
import h11
import pytest
from gevent import socket as gsocket

from examples import port_flask
from h3green import Server

pytestmark = pytest.mark.live


class Conn:
    """One keep-alive HTTP/1.1 connection (h11 over a gevent socket)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = gsocket.create_connection(address, timeout=10)
        self.h11 = h11.Connection(h11.CLIENT)

    def _next(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(self.sock.recv(65536))

    def open(self, method: str, target: str, body: bytes = b"", ctype: str = "") -> h11.Response:
        headers = [("host", "localhost")]
        if body:
            headers += [("content-length", str(len(body))), ("content-type", ctype)]
        data = self.h11.send(h11.Request(method=method, target=target, headers=headers))
        data += (self.h11.send(h11.Data(data=body)) if body else b"") + self.h11.send(h11.EndOfMessage())
        self.sock.sendall(data)
        while True:
            event = self._next()
            if type(event) is h11.Response:
                return event

    def pieces(self) -> Iterator[bytes]:
        while True:
            event = self._next()
            if type(event) is h11.Data:
                yield bytes(event.data)
            elif type(event) in (h11.EndOfMessage, h11.ConnectionClosed):
                return

    def request(
        self, method: str, target: str, body: bytes = b"", ctype: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        head = self.open(method, target, body, ctype)
        data = b"".join(self.pieces())
        self.h11.start_next_cycle()
        headers = {k.decode(): v.decode() for k, v in head.headers}
        return head.status_code, headers, data


@pytest.fixture
def server() -> Iterator[Server]:
    port_flask.notes.clear()
    server = Server(port_flask.app, port=0, access_log=False)
    server.start()
    yield server
    server.stop(timeout=2)


def test_port_flask_end_to_end(server: Server) -> None:
    conn = Conn(server.address)
    updates = Conn(server.address)
    try:
        # The native SSE stream is open before the legacy form posts anything.
        head = updates.open("GET", "/updates")
        assert head.status_code == 200
        assert dict(head.headers)[b"content-type"].startswith(b"text/event-stream")
        events = updates.pieces()

        status, headers, _ = conn.request("GET", "/")
        assert (status, headers["location"]) == (302, "/legacy/")
        status, headers, page = conn.request("GET", "/legacy/")
        assert status == 200 and b"<form" in page and b'action="/legacy/notes"' in page

        # A form post to Flask: redirect back to the page (url_for knows the mount prefix).
        form = urlencode({"text": "first <note>"}).encode()
        status, headers, _ = conn.request("POST", "/legacy/notes", form, "application/x-www-form-urlencoded")
        assert (status, headers["location"]) == (302, "/legacy/")
        assert b"first &lt;note&gt;" in conn.request("GET", "/legacy/")[2]

        # ...and the h3green stream carried it as an event.
        received = b""
        with gevent.Timeout(5):
            for piece in events:
                received += piece
                if b"event: note" in received:
                    break
        assert b'data: {"id":1,"text":"first <note>"}' in received

        # Bad form input: Flask redirects with the error.
        status, headers, _ = conn.request(
            "POST", "/legacy/notes", b"text=", "application/x-www-form-urlencoded"
        )
        assert status == 302 and "error=" in headers["location"]

        # JSON on both sides of the port, one store.
        status, _, body = conn.request(
            "POST", "/legacy/api/notes", b'{"text": "from flask"}', "application/json"
        )
        assert status == 201 and json.loads(body)["id"] == 2
        status, _, body = conn.request("POST", "/api/notes", b'{"text": "from h3green"}', "application/json")
        assert status == 201 and json.loads(body) == {"id": 3, "text": "from h3green"}
        assert json.loads(conn.request("GET", "/api/notes")[2]) == json.loads(
            conn.request("GET", "/legacy/api/notes")[2]
        )
        assert conn.request("POST", "/api/notes", b"[1]", "application/json")[0] == 400
        assert conn.request("POST", "/api/notes", b'{"text": ""}', "application/json")[0] == 400
        assert conn.request("POST", "/legacy/api/notes", b'{"text": ""}', "application/json")[0] == 400
        assert conn.request("GET", "/legacy/missing")[0] == 404
    finally:
        conn.sock.close()
        updates.sock.close()
