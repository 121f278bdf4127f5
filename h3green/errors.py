"""Exceptions raised by h3green, and whose fault each one is.

::

    H3Error                      base of everything h3green raises on purpose
    ├── HTTPError                a response with a status: raise it anywhere to answer with it
    │   │                        (4xx: the client's fault; 5xx: the server's)
    │   └── ChannelUnavailable   503: a channel's backend (Redis) could not be reached in
    │                            time; unhandled, the request is answered 503 with Retry-After
    ├── UsageError               your code used the API wrongly (also a RuntimeError): a bug
    │   │                        in the app, raised where it happens, never the client's fault
    │   ├── SSEAlreadyStarted    start_sse() called twice
    │   └── ResponseAlreadySent  the response head is already on the wire; it is fixed now
    └── SSEError                 about a Server-Sent Events stream
        ├── WriterClosed         your code closed the writer, then wrote to it
        ├── ConnectionLost       the client went away (EOF, reset, or the server shut down)
        └── BackpressureDetected the client stopped reading: a send timed out or the
                                 per-stream queue overflowed; the connection was dropped

The two usage errors are also ``SSEError`` subclasses, where the first version of the
tree had them, so ``except SSEError`` written then still catches them.

``HTTPError`` bodies follow H3's shape: ``{"status", "statusText", "message", "data"?}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from .datastructures import HeadersInit, MultiDict

__all__ = [
    "BackpressureDetected",
    "ChannelUnavailable",
    "ConnectionLost",
    "H3Error",
    "HTTPError",
    "ResponseAlreadySent",
    "SSEAlreadyStarted",
    "SSEError",
    "UsageError",
    "WriterClosed",
    "status_text",
]


def status_text(status: int) -> str:
    """The reason phrase for *status* ("" for codes HTTP does not name)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class H3Error(Exception):
    """Base class of the exceptions h3green raises on purpose."""


class HTTPError(H3Error):
    """Raise anywhere (handler, middleware, hook, body reader) to answer with *status*.

    ``message`` defaults to the status's reason phrase; ``data`` (any JSON-able value) is
    added to the body when given; ``headers`` are added to the response (``Allow``,
    ``Retry-After``, ``WWW-Authenticate``...).
    """

    def __init__(
        self,
        status: int = 500,
        message: str | None = None,
        data: Any = None,
        headers: HeadersInit = None,
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"HTTPError status must be 4xx or 5xx, got {status}")
        self.status = status
        self.status_text = status_text(status)
        self.message = message if message is not None else self.status_text
        self.data = data
        if headers is None:
            self.headers: list[tuple[str, str]] = []
        elif isinstance(headers, Mapping | MultiDict):
            self.headers = list(headers.items())
        else:
            self.headers = list(headers)
        super().__init__(status, self.message)

    def __str__(self) -> str:
        return f"{self.status} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body as a dict (what ``json_dumps`` turns into the response body)."""
        body: dict[str, Any] = {
            "status": self.status,
            "statusText": self.status_text,
            "message": self.message,
        }
        if self.data is not None:
            body["data"] = self.data
        return body

    #: The first name of ``to_dict``, kept for code written against it.
    to_json = to_dict


class ChannelUnavailable(HTTPError):
    """A channel's backend (Redis) did not answer within its timeout: the event was not
    published. Nobody's fault in the request; raised by ``Channel.publish`` so a handler
    never hangs, and answered ``503`` with ``Retry-After`` when the handler lets it go."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(503, message, headers=[("Retry-After", str(retry_after))])


class SSEError(H3Error):
    """Base class of the Server-Sent Events errors."""


class WriterClosed(SSEError):
    """The writer was closed by your code (or the callback returned); nothing more can be sent."""


class ConnectionLost(SSEError):
    """The client went away, or the server is shutting down; nothing more can be sent."""


class BackpressureDetected(SSEError):
    """The client stopped reading: a send timed out or the stream's queue overflowed."""


class UsageError(H3Error, RuntimeError):
    """Your code used the API in a way it does not allow: a bug in the app."""


class SSEAlreadyStarted(UsageError, SSEError):
    """``start_sse()`` was called twice for one request."""


class ResponseAlreadySent(UsageError, SSEError):
    """The response head is already on the wire, so it can no longer be changed."""
