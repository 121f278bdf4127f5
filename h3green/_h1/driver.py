"""The one interface the connection loop drives, whichever parser is underneath.

Driven like h11's own trio example: feed bytes with ``receive_data``, pull events with
``next_event`` until ``NEED_DATA``, frame the response with ``head``/``body``/``end``,
then ``start_next_cycle`` when both sides are done and the connection can be kept alive.
"""

from __future__ import annotations

from typing import Final, Protocol

from .events import Event

__all__ = ["PARSERS", "Driver", "driver_class", "httptools_available"]

#: The values of ``Config.http_parser``.
PARSERS: Final = ("h11", "httptools", "auto")


class Driver(Protocol):
    """One server-side HTTP/1.1 connection, as a state machine over bytes."""

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the client closed its side."""

    def next_event(self) -> Event:
        """The next request head, body piece, end of body, ``NEED_DATA`` or ``PAUSED``;
        raises ``ProtocolError`` (again, if asked again) once the client broke HTTP."""

    def informational(self, status: int = 100) -> bytes:
        """An interim response (100 Continue)."""

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """Bytes of the status line and headers (framing headers added as needed)."""

    def fixed(self, status: int, lines: bytes, body: bytes, close: bool) -> bytes | None:
        """A whole response with a fixed body (encoded header *lines*, no framing or
        ``Connection`` field among them), or None when ``head`` must frame it."""

    def body(self, data: bytes) -> bytes:
        """Bytes framing one piece of response body."""

    def end(self) -> bytes:
        """Bytes ending the response body."""

    def send_failed(self) -> None:
        """The socket write failed: the connection cannot be reused."""

    @property
    def response_started(self) -> bool: ...

    @property
    def request_done(self) -> bool:
        """The client finished sending the current request (body included)."""

    @property
    def client_failed(self) -> bool:
        """The client broke the protocol mid-request: the rest is unreadable."""

    @property
    def can_reuse(self) -> bool:
        """Both sides are done and neither asked to close: another request may follow."""

    def start_next_cycle(self) -> None: ...

    @property
    def buffered(self) -> bool:
        """Bytes of a next request were received and are not parsed into an event yet
        (``trailing_data`` has some), asked for more cheaply."""

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Bytes received but not parsed yet, and whether the client closed after them."""


class _DriverClass(Protocol):
    def __call__(self, *, max_request_line: int, max_header_bytes: int, max_header_count: int) -> Driver: ...


def httptools_available() -> bool:
    try:
        from . import httptools_driver  # noqa: F401
    except ImportError:
        return False
    return True


def driver_class(parser: str) -> _DriverClass:
    """The driver for a ``Config.http_parser`` value: httptools unless "h11" or missing."""
    if parser != "h11":
        try:
            from .httptools_driver import HttptoolsDriver
        except ImportError:
            pass
        else:
            return HttptoolsDriver
    from .h11_driver import H11Driver

    return H11Driver
