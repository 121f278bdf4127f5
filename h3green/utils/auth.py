"""HTTP Basic authentication (RFC 7617): ``require_basic_auth(event, ...)`` and the
``basic_auth(...)`` middleware.

Strategy: parse the ``Authorization`` header leniently where the RFC allows (the scheme
is case-insensitive, RFC 9110 §11.1; credentials are base64 of ``user:password`` split at
the *first* colon, since a user-id may not contain one but a password may, RFC 7617 §2),
decode as UTF-8 (what ``charset="UTF-8"`` asks clients for, §2.1) and fall back to
Latin-1 for old clients. Compare with ``hmac.compare_digest`` on both fields, always
both, so the time taken says nothing about which one was wrong or how much of it.

Failure is a 401 with ``WWW-Authenticate: Basic realm="...", charset="UTF-8"``. A
configuration that would accept anyone (no password and no ``validate``) is refused when
it is made, not discovered in production.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import HTTPError

if TYPE_CHECKING:
    from ..app import Middleware, Next
    from ..event import H3Event

__all__ = ["basic_auth", "require_basic_auth"]

Validate = Callable[[str, str], object]


class _Options:
    __slots__ = ("challenge", "password", "realm", "username", "validate")

    def __init__(
        self, username: str | None, password: str | None, validate: Validate | None, realm: str
    ) -> None:
        if password is None and validate is None:
            raise ValueError("basic auth needs a password or a validate(username, password) function")
        if validate is not None and not callable(validate):
            raise TypeError(f"validate must be callable, got {validate!r}")
        if any(c in realm for c in '\r\n\x00"\\'):
            raise ValueError(f"realm may not contain quotes, backslashes or control characters: {realm!r}")
        self.username = None if username is None else username.encode()
        self.password = None if password is None else password.encode()
        self.validate = validate
        self.realm = realm
        self.challenge = f'Basic realm="{realm}", charset="UTF-8"'


def _credentials(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    username, colon, password = text.partition(":")
    if not colon:
        return None
    return username, password


def _same(expected: bytes | None, given: str) -> bool:
    if expected is None:
        return True
    return hmac.compare_digest(expected, given.encode())


def _check(event: H3Event, options: _Options) -> str:
    found = _credentials(event.headers.get("authorization"))
    if found is not None:
        username, password = found
        # Both comparisons always run: no early exit tells which one failed.
        user_ok = _same(options.username, username)
        password_ok = _same(options.password, password)
        if user_ok and password_ok and (options.validate is None or options.validate(username, password)):
            event.context["basic_auth"] = {"username": username, "realm": options.realm}
            return username
    raise HTTPError(401, "Authentication required", headers={"www-authenticate": options.challenge})


def require_basic_auth(
    event: H3Event,
    *,
    username: str | None = None,
    password: str | None = None,
    validate: Validate | None = None,
    realm: str = "auth",
) -> str:
    """The authenticated username, or ``HTTPError(401)`` with the Basic challenge.

    ``username``/``password``: the expected credentials (``username=None`` accepts any
    user with the right password). ``validate(username, password)``: a callable that
    returns truthy to accept (check a user table; use ``hmac.compare_digest``). At least
    one of ``password`` and ``validate`` is required. On success,
    ``event.context["basic_auth"]`` is ``{"username": ..., "realm": ...}``.
    """
    return _check(event, _Options(username, password, validate, realm))


def basic_auth(
    *,
    username: str | None = None,
    password: str | None = None,
    validate: Validate | None = None,
    realm: str = "auth",
) -> Middleware:
    """Middleware that lets only authenticated requests through (``app.use(basic_auth(...))``).

    The options are those of ``require_basic_auth``, checked once, here.
    """
    options = _Options(username, password, validate, realm)

    def middleware(event: H3Event, next: Next) -> Any:
        _check(event, options)
        return None  # carry on: the app calls next()

    return middleware
