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


# -- raw ASGI, Starlette and FastAPI (uvicorn) ----------------------------------------


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """The endpoints as a bare ASGI callable (uvicorn runs it with ``--lifespan off``)."""
    path = scope["path"]
    status = 200
    if path == "/":
        body, ctype = HELLO, b"text/plain"
    elif path.startswith("/users/") and path.count("/") == 2:
        fields = parse_qs(scope["query_string"].decode("latin-1")).get("fields", [None])[-1]
        body = json.dumps(user_record(path[7:], fields), separators=(",", ":")).encode()
        ctype = b"application/json"
    else:
        status, body, ctype = 404, b"", b"text/plain"
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def make_starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    async def hello(request: Request) -> Response:
        return PlainTextResponse(HELLO_TEXT)

    async def user(request: Request) -> Response:
        return JSONResponse(user_record(request.path_params["id"], request.query_params.get("fields")))

    return Starlette(routes=[Route("/", hello), Route("/users/{id}", user)])


def make_fastapi_app() -> Any:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()

    # No return annotations, as most FastAPI code is written: an annotation would make
    # FastAPI validate every response against it.
    @app.get("/", response_class=PlainTextResponse)
    async def hello():
        return HELLO_TEXT

    @app.get("/users/{user_id}")
    async def user(user_id: str, fields: str | None = None):
        return user_record(user_id, fields)

    return app


_FACTORIES: dict[str, Callable[[], Any]] = {
    "h3_app": make_h3_app,
    "flask_app": make_flask_app,
    "starlette_app": make_starlette_app,
    "fastapi_app": make_fastapi_app,
}


def __getattr__(name: str) -> Any:
    # gunicorn and uvicorn import "apps:<name>_app"; build only the one asked for.
    if name in _FACTORIES:
        return _FACTORIES[name]()
    raise AttributeError(name)
