"""Cookies: reading the request's ``Cookie`` header and writing ``Set-Cookie`` (RFC 6265).

Reading is lenient, as browsers are: a malformed pair is skipped instead of discarding
the whole header (the stdlib's ``SimpleCookie`` drops everything after the first bad
pair). Writing is strict: a name that is not a token, or a value with characters outside
RFC 6265 §4.1.1's ``cookie-octet`` (no space, quote, comma, semicolon, backslash or
control character), raises ``ValueError`` rather than produce a header that browsers
would split or ignore; encode such values first (``urllib.parse.quote``, base64, JSON).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal

__all__ = ["delete_cookie_header", "parse_cookie_header", "set_cookie_header"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_COOKIE_VALUE = re.compile(
    r'(?:"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"|[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*)\Z'
)
_ATTRIBUTE_VALUE = re.compile(r"[^\x00-\x1f\x7f;]*\Z")

SameSite = Literal["lax", "strict", "none"]


def parse_cookie_header(header: str) -> dict[str, str]:
    """``"a=1; b=2"`` → ``{"a": "1", "b": "2"}``; the first of a repeated name wins."""
    cookies: dict[str, str] = {}
    for pair in header.split(";"):
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies.setdefault(name, value)
    return cookies


def set_cookie_header(  # noqa: PLR0912, PLR0913 - one keyword and one check per RFC 6265 attribute
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    expires: datetime | None = None,
    path: str | None = "/",
    domain: str | None = None,
    secure: bool = False,
    httponly: bool = False,
    samesite: SameSite | None = "lax",
    partitioned: bool = False,
) -> str:
    """The value of one ``Set-Cookie`` header."""
    if not _TOKEN.match(name):
        raise ValueError(f"cookie name {name!r} is not an HTTP token")
    if not _COOKIE_VALUE.match(value):
        raise ValueError(
            f"cookie {name!r} value {value!r} has characters RFC 6265 does not allow "
            "(space, quote, comma, semicolon, backslash, control or non-ASCII); encode it first"
        )
    parts = [f"{name}={value}"]
    if max_age is not None:
        if type(max_age) is not int:
            raise ValueError(f"cookie max_age must be an int (seconds), got {max_age!r}")
        parts.append(f"Max-Age={max_age}")
    if expires is not None:
        if expires.tzinfo is None:
            raise ValueError("cookie expires must be a timezone-aware datetime")
        parts.append(f"Expires={format_datetime(expires.astimezone(UTC), usegmt=True)}")
    for attribute, text in (("Domain", domain), ("Path", path)):
        if text is not None:
            if not _ATTRIBUTE_VALUE.match(text):
                raise ValueError(f"cookie {attribute.lower()} {text!r} contains ';' or a control character")
            parts.append(f"{attribute}={text}")
    if samesite is not None:
        if samesite not in ("lax", "strict", "none"):
            raise ValueError(f"cookie samesite must be 'lax', 'strict' or 'none', got {samesite!r}")
        if samesite == "none" and not secure:
            # Browsers reject SameSite=None without Secure; say so now, not in production.
            raise ValueError("cookie samesite='none' requires secure=True")
        parts.append(f"SameSite={samesite.capitalize()}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if partitioned:
        parts.append("Partitioned")
    return "; ".join(parts)


def delete_cookie_header(name: str, *, path: str | None = "/", domain: str | None = None) -> str:
    """A ``Set-Cookie`` value that makes browsers drop cookie *name* at once."""
    return set_cookie_header(
        name,
        "",
        max_age=0,
        expires=datetime(1970, 1, 1, tzinfo=UTC),
        path=path,
        domain=domain,
        samesite=None,
    )
