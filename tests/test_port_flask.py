"""``examples/port_flask.py`` end to end over real sockets: Flask under /legacy, SSE natively."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from helpers import RawClient

from examples import port_flask
from h3green import Server

pytestmark = pytest.mark.live


FORM = [("content-type", "application/x-www-form-urlencoded")]
JSON = [("content-type", "application/json")]


@pytest.fixture
def server(serve_app: Callable[..., Server]) -> Server:
    port_flask.notes.clear()
    return serve_app(port_flask.app)


def test_port_flask_end_to_end(server: Server) -> None:
    conn = RawClient(server.address, timeout=10.0)
    updates = RawClient(server.address, timeout=10.0)
    try:
        # The native SSE stream is open before the legacy form posts anything.
        head = updates.open("GET", "/updates")
        assert head.status_code == 200
        assert dict(head.headers)[b"content-type"].startswith(b"text/event-stream")

        status, headers, _ = conn.fetch("GET", "/")
        assert (status, headers["location"]) == (302, "/legacy/")
        status, headers, page = conn.fetch("GET", "/legacy/")
        assert status == 200 and b"<form" in page and b'action="/legacy/notes"' in page

        # A form post to Flask: redirect back to the page (url_for knows the mount prefix).
        form = urlencode({"text": "first <note>"}).encode()
        status, headers, _ = conn.fetch("POST", "/legacy/notes", form, FORM)
        assert (status, headers["location"]) == (302, "/legacy/")
        assert b"first &lt;note&gt;" in conn.fetch("GET", "/legacy/")[2]

        # ...and the h3green stream carried it as an event.
        received = updates.read_until(b"event: note", timeout=5)
        assert b'data: {"id":1,"text":"first <note>"}' in received

        # Bad form input: Flask redirects with the error.
        status, headers, _ = conn.fetch("POST", "/legacy/notes", b"text=", FORM)
        assert status == 302 and "error=" in headers["location"]

        # JSON on both sides of the port, one store.
        status, _, body = conn.fetch("POST", "/legacy/api/notes", b'{"text": "from flask"}', JSON)
        assert status == 201 and json.loads(body)["id"] == 2
        status, _, body = conn.fetch("POST", "/api/notes", b'{"text": "from h3green"}', JSON)
        assert status == 201 and json.loads(body) == {"id": 3, "text": "from h3green"}
        assert json.loads(conn.fetch("GET", "/api/notes")[2]) == json.loads(
            conn.fetch("GET", "/legacy/api/notes")[2]
        )
        assert conn.fetch("POST", "/api/notes", b"[1]", JSON)[0] == 400
        assert conn.fetch("POST", "/api/notes", b'{"text": ""}', JSON)[0] == 400
        assert conn.fetch("POST", "/legacy/api/notes", b'{"text": ""}', JSON)[0] == 400
        assert conn.fetch("GET", "/legacy/missing")[0] == 404
    finally:
        conn.close()
        updates.close()
