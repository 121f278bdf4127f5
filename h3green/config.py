"""``Config``: every limit and switch of the native server, typed and checked once.

Each field is a keyword of ``Server``/``serve``, a flag of ``python -m h3green`` and an
``H3GREEN_<FIELD>`` variable of the gunicorn worker; the flags and the variables are read
by the one parser here, ``parse_field``, so a value means the same wherever it is given.
A bad value is refused when the ``Config`` is made (``ValueError``/``TypeError``), not on
the first request that meets it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final, TypedDict

from ._h1 import events as h1
from ._h1.driver import PARSERS, httptools_available
from .event import DEFAULT_MAX_BODY_SIZE
from .sse import encode_event
from .utils.forwarded import trusted_proxies

__all__ = ["Config", "ConfigOptions", "field_kind", "make_config", "parse_field"]


@dataclasses.dataclass(slots=True)
class Config:
    """Limits and behaviour of a server; every field is a keyword of ``Server``/``serve``
    and a flag of ``python -m h3green``. README's "Limits and defaults" has the table.

    Each default follows a precedent, and is at least as strict as gunicorn's.
    """

    #: Open connections (streams included); past it, new ones get 503 and Retry-After.
    #: gunicorn's ``worker_connections`` (1,000).
    max_connections: int = 1000
    #: Bytes of request line, so of URL too: 414 past it. gunicorn's ``limit_request_line``.
    max_request_line: int = h1.DEFAULT_MAX_REQUEST_LINE
    #: Bytes of header fields: 431 past it. node's ``--max-http-header-size`` (16 KiB).
    max_header_bytes: int = h1.DEFAULT_MAX_HEADER_BYTES
    #: Header fields: 431 past it. gunicorn's ``limit_request_fields`` (100).
    max_header_count: int = h1.DEFAULT_MAX_HEADER_COUNT
    #: Request body bytes (declared or, when chunked, counted): 413. nginx's 1 MiB.
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    #: Seconds a connection may wait for the first byte of its next request, then it is
    #: closed without a word (0: no limit). node's ``keepAliveTimeout`` (5 s).
    keepalive_timeout: float = 5.0
    #: Seconds from a request's first byte to the end of its head, in total, so a client
    #: that trickles a byte at a time is cut: 408. A sixth of node's ``headersTimeout`` and
    #: nginx's ``client_header_timeout`` (60 s): a healthy client sends its head at once.
    header_timeout: float = 10.0
    #: Seconds one read of the request body may wait: 408. nginx's
    #: ``client_body_timeout`` (60 s, also per read), halved.
    body_timeout: float = 30.0
    #: Seconds one write of a response (one ``sendall``) may wait for a client that does
    #: not read; then the connection is dropped. nginx's ``send_timeout`` (60 s), halved.
    write_timeout: float = 30.0
    #: Seconds a connection closing after an error (or a 503) keeps reading and dropping
    #: what the client still sends, so the client reads the answer rather than a reset.
    #: nginx's ``lingering_timeout`` (5 s), shortened: it also delays ``stop()``.
    linger_timeout: float = 1.0
    #: Unread request body drained after a response so the connection can be reused.
    max_drain_bytes: int = 64 * 1024
    #: Seconds of idleness after which a stream gets a heartbeat comment (0: never).
    sse_heartbeat: float = 15.0
    #: Seconds one SSE write may wait before the client counts as not reading (0: no limit).
    sse_send_timeout: float = 10.0
    #: Sent to every open stream at shutdown (None: just close the streams).
    sse_shutdown_event: bytes | None = encode_event(
        {"reason": "server shutting down"}, event="shutdown", retry=3000
    )
    #: Seconds ``stop()`` waits for requests and streams before cutting them.
    shutdown_timeout: float = 10.0
    #: One INFO line per response on the ``h3green.access`` logger.
    access_log: bool = True
    #: With ``access_log`` on, write the lines to this file instead (Common Log Format),
    #: formatted once and written in batches at most a second late: ~1 us a line rather
    #: than logging's ~25 (see ``h3green._accesslog``). None: through the logger.
    access_log_file: str | None = None
    #: Value of the ``Server`` header, or None to send none (no version is ever leaked).
    server_header: str | None = None
    #: Listen backlog: connections the kernel queues before ``accept``. gunicorn's 2,048.
    backlog: int = 2048
    #: HTTP/1.1 parser: "auto" (httptools when importable, else h11), "httptools" (llhttp,
    #: in C: about 2.5x the hello requests/s of h11), or "h11" (pure Python, the reference).
    #: Same answers, except where llhttp is stricter (see ``_h1.httptools_driver``).
    http_parser: str = "auto"
    #: Proxies whose ``Forwarded``/``X-Forwarded-*`` headers set the client's address,
    #: scheme and host: comma-separated addresses and networks, or ``*`` ("": none).
    #: gunicorn's ``forwarded_allow_ips``; see ``h3green.utils.forwarded``.
    forwarded_allow_ips: str = ""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check(field.name, field_kind(field), getattr(self, field.name))
        trusted_proxies(self.forwarded_allow_ips)  # a bad entry is a ValueError now
        if self.http_parser not in PARSERS:
            raise ValueError(f"http_parser must be one of {', '.join(PARSERS)}, got {self.http_parser!r}")
        if self.http_parser == "httptools" and not httptools_available():
            raise ValueError("http_parser='httptools' needs the httptools package: pip install httptools")


class ConfigOptions(TypedDict, total=False):
    """``Config``'s fields as keyword options (of ``Server``, ``serve``, ``TestClient``):
    a type checker catches a misspelt or mistyped option; at run time ``Config`` refuses
    it (``TypeError``) before anything starts. A test keeps the two in step.
    """

    max_connections: int
    max_request_line: int
    max_header_bytes: int
    max_header_count: int
    max_body_size: int
    keepalive_timeout: float
    header_timeout: float
    body_timeout: float
    write_timeout: float
    linger_timeout: float
    max_drain_bytes: int
    sse_heartbeat: float
    sse_send_timeout: float
    sse_shutdown_event: bytes | None
    shutdown_timeout: float
    access_log: bool
    server_header: str | None
    backlog: int
    http_parser: str
    forwarded_allow_ips: str
    access_log_file: str | None


def make_config(config: Config | None, options: ConfigOptions) -> Config:
    """*config* (``Config()`` when None) with the fields in *options* replaced.

    An unknown option is a ``TypeError``, a bad value a ``TypeError``/``ValueError``, here.
    """
    if config is None:
        return Config(**options)
    if not isinstance(config, Config):
        raise TypeError(f"config must be a Config, got {config!r}")
    return dataclasses.replace(config, **options) if options else config


# Limits that must let at least one of their kind through.
_AT_LEAST_ONE: Final = frozenset(
    {"max_connections", "max_request_line", "max_header_bytes", "max_header_count"}
)
_TYPES: Final = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def field_kind(field: dataclasses.Field[Any]) -> str:
    """A field's annotation as written: "int", "float", "bool", "str", "str | None"..."""
    return field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")


def _check(name: str, kind: str, value: Any) -> None:
    optional = kind.endswith(" | None")
    base = kind.removesuffix(" | None")
    if value is None and optional:
        return
    types = _TYPES.get(base, (bytes,))
    if not isinstance(value, types) or (base != "bool" and isinstance(value, bool)):
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        least = 1 if name in _AT_LEAST_ONE else 0
        if not value >= least:  # also refuses NaN
            raise ValueError(f"{name} must be >= {least}, got {value!r}")
    elif isinstance(value, str) and name == "server_header" and not _header_safe(value):
        # It becomes a header value: no CR/LF (response splitting), latin-1 only.
        raise ValueError(f"server_header must be printable latin-1 text, got {value!r}")


def _header_safe(value: str) -> bool:
    return value.isprintable() and all(char <= "\xff" for char in value)


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def parse_field(name: str, text: str, label: str | None = None) -> Any:
    """The value of ``Config`` field *name* written as *text* (a flag or an env variable).

    Booleans: 1/0, true/false, yes/no, on/off. ``none`` (any case) is None for the fields
    that allow it. *label* names the source in error messages (default: the field name).
    """
    fields = {field.name: field for field in dataclasses.fields(Config)}
    kind = field_kind(fields[name])
    label = label or name
    lowered = text.strip().lower()
    if kind.endswith(" | None") and lowered in ("none", "") and (lowered or kind.startswith("bytes")):
        return None
    if kind == "bool":
        if lowered not in _TRUE and lowered not in _FALSE:
            raise ValueError(f"{label} must be a boolean, got {text!r}")
        return lowered in _TRUE
    if kind.startswith("bytes"):
        return text.encode()
    if kind.startswith("str"):
        return text
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise ValueError(f"{label} must be a number, got {text!r}") from None
