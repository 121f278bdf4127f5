"""What every HTTP/1.1 driver shares: the events it yields, its limits, its errors.

Both drivers (``h11_driver`` and ``httptools_driver``) turn request bytes into exactly
these objects and raise exactly this ``ProtocolError``, so the connection loop never
knows which parser runs underneath.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

__all__ = [
    "BOTH_LENGTHS",
    "CLIENT_CLOSED",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_HEADER_COUNT",
    "DEFAULT_MAX_REQUEST_LINE",
    "END_OF_BODY",
    "NEED_DATA",
    "NO_BODY_STATUSES",
    "PAUSED",
    "REASONS",
    "Body",
    "ClientClosed",
    "EndOfBody",
    "Event",
    "ProtocolError",
    "RequestHead",
    "codings_status",
    "has_token",
]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: More bytes are needed before anything else can be parsed.
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: The client sent a whole request; the next one waits until ``start_next_cycle``.
PAUSED: Final = _Sentinel("PAUSED")


class ProtocolError(Exception):
    """The client broke HTTP/1.1 (its fault): answer ``status`` if possible, then close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RequestHead:
    """A request line and its headers (names lower-cased, values as sent)."""

    __slots__ = ("expects_continue", "has_body", "headers", "http_version", "method", "target")

    def __init__(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        http_version: str,
        expects_continue: bool,
        *,
        has_body: bool = True,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.expects_continue = expects_continue
        #: A body follows (chunked, or a Content-Length other than 0): if not, the
        #: driver's next event is this request's ``EndOfBody``.
        self.has_body = has_body


class Body:
    """A piece of request body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class EndOfBody:
    """The request body is complete."""

    __slots__ = ()


class ClientClosed:
    """The client closed its side of the connection."""

    __slots__ = ()


END_OF_BODY: Final = EndOfBody()
CLIENT_CLOSED: Final = ClientClosed()

Event = RequestHead | Body | EndOfBody | ClientClosed | _Sentinel

# Header-block and request-line limits follow long-standing precedent, never looser than
# gunicorn's: a 4094-byte request line (gunicorn's limit_request_line; nginx allows 8 KiB),
# 16 KiB of head (node's --max-http-header-size) and 100 header fields (gunicorn's
# limit_request_fields).
DEFAULT_MAX_REQUEST_LINE: Final = 4094
DEFAULT_MAX_HEADER_BYTES: Final = 16384
DEFAULT_MAX_HEADER_COUNT: Final = 100

#: RFC 9110 §15.3.5/§15.4.5: 204 and 304 responses end at their head (as do all 1xx).
NO_BODY_STATUSES: Final = frozenset({204, 304})

REASONS: Final = {status.value: status.phrase.encode() for status in HTTPStatus}

BOTH_LENGTHS: Final = "both Content-Length and Transfer-Encoding"


def codings_status(values: list[bytes]) -> tuple[int, str]:
    """The answer to Transfer-Encoding *values* other than one ``chunked``.

    RFC 9112 §6.3: chunked must be the final coding, applied once (§7.1), else 400;
    codings we do not implement before a final chunked: 501 (§6.1).
    """
    codings = [c.strip().lower() for v in values for c in v.split(b",") if c.strip()]
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        return 400, "Transfer-Encoding must end with a single chunked"
    return 501, "only the chunked transfer coding is implemented"


def has_token(values: list[bytes], token: bytes) -> bool:
    """Does a comma-separated header (``Connection``, ``Expect``) carry *token*?"""
    return any(part.strip().lower() == token for value in values for part in value.split(b","))
