"""The benchmark's applications: the same two endpoints for every server under test.

``GET /`` answers ``Hello, World!`` as text/plain; ``GET /users/:id?fields=a,b`` answers
a small JSON object built from the path parameter and the query. Each peer gets the
idiomatic version for its own API (an H3 app, a raw WSGI callable, a Flask app), so the
numbers compare frameworks doing the same work, not the same code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

HELLO = b"Hello, World!"
HELLO_TEXT = HELLO.decode()


def user_record(user_id: str, fields: str | None) -> dict[str, Any]:
    wanted = fields.split(",") if fields else ["name"]
    record: dict[str, Any] = {"id": user_id}
    for field in wanted:
        if field == "name":
            record["name"] = f"user{user_id}"
        elif field == "email":
            record["email"] = f"user{user_id}@example.com"
        elif field == "active":
            record["active"] = True
    return record


# -- h3green --------------------------------------------------------------------------


def make_h3_app() -> Any:
    from h3green import H3, H3Event

    app = H3()

    @app.get("/")
    def hello(event: H3Event) -> str:
        return HELLO_TEXT  # a str is answered as text/plain

    @app.get("/users/:id")
    def user(event: H3Event) -> dict[str, Any]:
        return user_record(event.params["id"], event.get_query("fields"))

    return app


# -- raw WSGI (gevent.pywsgi) --------------------------------------------------------

_TEXT_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/":
        start_response("200 OK", _TEXT_HEADERS)
        return [HELLO]
    if path.startswith("/users/") and path.count("/") == 2:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        fields = query.get("fields", [None])[-1]
        body = json.dumps(user_record(path[7:], fields), separators=(",", ":")).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Length", "0")])
    return [b""]


# -- Flask (gunicorn -k gevent) -------------------------------------------------------


def make_flask_app() -> Any:
    from flask import Flask, request

    app = Flask("bench")

    @app.get("/")
    def hello() -> Any:
        return HELLO, 200, {"Content-Type": "text/plain"}

    @app.get("/users/<user_id>")
    def user(user_id: str) -> Any:
        return user_record(user_id, request.args.get("fields"))

    return app


def __getattr__(name: str) -> Any:
    # gunicorn imports "apps:h3_app" / "apps:flask_app"; build only the one asked for.
    if name == "h3_app":
        return make_h3_app()
    if name == "flask_app":
        return make_flask_app()
    raise AttributeError(name)
