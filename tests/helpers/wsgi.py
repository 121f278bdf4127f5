"""Calling WSGI applications in-process, checked by ``wsgiref.validate``."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator


class WSGIResult:
    def __init__(self, status: str, headers: list[tuple[str, str]], chunks: list[bytes]) -> None:
        self.status = status
        self.status_code = int(status[:3])
        self.headers = headers
        self.chunks = chunks
        self.body = b"".join(chunks)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def make_environ(
    method: str = "GET",
    path: str = "/",
    *,
    query: str = "",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An environ as a WSGI server builds it; *path* is PATH_INFO as PEP 3333 str."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(body or b""),
    }
    if body is not None:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            environ["HTTP_" + key] = value
    environ.update(extra)
    setup_testing_defaults(environ)
    return environ


def start(
    app: Any, environ: dict[str, Any], *, validate: bool = True
) -> tuple[dict[str, Any], Iterable[bytes]]:
    """Call *app*; the head lands in the returned dict once start_response ran."""
    head: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        head["status"] = status
        head["headers"] = headers
        return lambda data: None

    wrapped = validator(app) if validate else app
    return head, wrapped(environ, start_response)


def call(app: Any, environ: dict[str, Any], *, validate: bool = True) -> WSGIResult:
    head, result = start(app, environ, validate=validate)
    try:
        chunks = list(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return WSGIResult(head["status"], head["headers"], chunks)
