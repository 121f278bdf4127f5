"""Conditional requests and cache headers: ``ETag``, ``Last-Modified``, ``304``.

Strategy: RFC 9110 §13.2.2 fixes the order. ``If-None-Match`` is evaluated first and, when
present, ``If-Modified-Since`` is ignored ("A recipient MUST ignore If-Modified-Since if
the request contains an If-None-Match header field"). Both only turn a ``GET`` or ``HEAD``
into ``304 Not Modified``; other methods are answered as usual. ``If-None-Match`` uses the
weak comparison (§8.8.3.2: ``W/"a"`` matches ``"a"``), accepts a list and ``*``; an
``If-Modified-Since`` that is not a valid HTTP date is ignored (§13.1.3).

The helpers below are shared with ``static``, which adds ``If-Range`` (a strong
comparison, §13.1.5) on top.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..event import H3Event

__all__ = [
    "etag_matches",
    "handle_cache_headers",
    "http_date",
    "is_not_modified",
    "parse_http_date",
]

#: A modification time: seconds since the epoch, or an aware ``datetime``.
ModifiedTime = float | int | datetime.datetime


def http_date(timestamp: float) -> str:
    """*timestamp* as an IMF-fixdate (``Wed, 02 Dec 2026 13:45:00 GMT``, RFC 9110 §5.6.7)."""
    return formatdate(timestamp, usegmt=True)


def parse_http_date(value: str | None) -> float | None:
    """The timestamp of an HTTP date, or None for anything that does not parse."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # "-0000" or obsolete forms: HTTP dates are always GMT
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _timestamp(value: ModifiedTime) -> int:
    """Whole seconds: HTTP dates have no finer resolution, so comparisons use these."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise ValueError("modified_time must be timezone-aware (or a timestamp)")
        return int(value.timestamp())
    return int(value)


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag[:2] == "W/" else tag


def etag_matches(header: str | None, etag: str, *, weak: bool = True) -> bool:
    """Does an ``If-None-Match``/``If-Match`` value list *etag*?

    ``*`` matches any current representation. With ``weak=True`` (the comparison
    ``If-None-Match`` uses) ``W/"x"`` and ``"x"`` are equal; with ``weak=False`` (the one
    ``If-Range`` uses) a weak tag on either side never matches.
    """
    if header is None:
        return False
    header = header.strip()
    if header == "*":
        return True
    if weak:
        wanted = _opaque(etag)
        return any(_opaque(tag) == wanted for tag in header.split(",") if tag.strip())
    if etag.startswith("W/"):
        return False
    return any(tag.strip() == etag for tag in header.split(","))


def is_not_modified(
    event: H3Event, *, etag: str | None = None, modified_time: ModifiedTime | None = None
) -> bool:
    """Would the request's validators make this ``GET``/``HEAD`` a ``304``?"""
    if event.method not in ("GET", "HEAD"):
        return False
    if_none_match = event.headers.get("if-none-match")
    if if_none_match is not None:
        return etag is not None and etag_matches(if_none_match, etag)
    if modified_time is None:
        return False
    since = parse_http_date(event.headers.get("if-modified-since"))
    return since is not None and _timestamp(modified_time) <= since


def _check_etag(etag: str) -> None:
    opaque = etag[2:] if etag.startswith("W/") else etag
    # RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
    if len(opaque) < 2 or opaque[0] != '"' or opaque[-1] != '"' or '"' in opaque[1:-1]:
        raise ValueError(f"etag must be a quoted string such as '\"v1\"' or 'W/\"v1\"', got {etag!r}")


def handle_cache_headers(
    event: H3Event,
    *,
    etag: str | None = None,
    modified_time: ModifiedTime | None = None,
    max_age: int | None = None,
    cache_control: Iterable[str] = (),
) -> bool:
    """Stage ``Cache-Control``, ``ETag`` and ``Last-Modified``; True after staging a 304.

    ``cache_control`` items (``"public"``, ``"no-cache"``...) and ``max_age`` (seconds)
    make up ``Cache-Control``. When the request's ``If-None-Match`` or
    ``If-Modified-Since`` says the client's copy is current, the status 304 is staged
    and the handler should return nothing::

        if handle_cache_headers(event, etag='"v3"', max_age=60):
            return None
        return expensive_page()
    """
    directives = list(cache_control)
    if max_age is not None:
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        directives.append(f"max-age={int(max_age)}")
    if directives:
        event.set_header("cache-control", ", ".join(directives))
    if etag is not None:
        _check_etag(etag)
        event.set_header("etag", etag)
    if modified_time is not None:
        event.set_header("last-modified", http_date(_timestamp(modified_time)))
    if is_not_modified(event, etag=etag, modified_time=modified_time):
        event.set_status(304)
        return True
    return False
