"""WSGI in both directions (placeholder until the WSGI adapter lands)."""

from __future__ import annotations

from typing import Any

__all__ = ["WSGIMount", "serve_wsgi"]


def serve_wsgi(app: Any, environ: Any, start_response: Any) -> Any:
    raise NotImplementedError("serving an H3 app through WSGI is not implemented yet")


class WSGIMount:
    def __init__(self, app: Any, prefix: str) -> None:
        raise NotImplementedError("mounting WSGI apps is not implemented yet")

    def __call__(self, event: Any) -> Any:
        raise NotImplementedError
