"""Sessions: ``use_session(event, secret=...)`` gives a ``Session`` kept in a sealed cookie.

Strategy: the session (its id, creation and last-write times, and its data) is serialised
as JSON and sealed with ``cryptography``'s Fernet (AES-128-CBC with HMAC-SHA256: encrypted
and authenticated; no home-made crypto here). Each secret is stretched into a Fernet key
with HKDF-SHA256; a list of secrets becomes a ``MultiFernet``, so the newest seals and
every one of them unseals, which is how a secret is rotated without logging anyone out.

Anything wrong with the cookie -- a flipped byte, a truncated or missing chunk, chunks
swapped, a secret no longer in the list, an expired session -- reads as "no session": a
fresh one starts and its cookie is set at once. It is never an error for the client.

A token longer than ``chunk_size`` is split over ``name.1`` ... ``name.N`` cookies and the
main cookie says how many (browsers cap one cookie at about 4 KiB, RFC 6265 §6.1). With a
``store`` (``MemoryStore``, or anything with its three methods: Redis, a database) only
the sealed id travels in the cookie and the data stays on the server.

``Set-Cookie`` is staged on the event, so it reaches whatever response ends the request,
error responses included. An unchanged session sends no cookie, except that with an
``idle_timeout`` the cookie is renewed once more than half of the timeout has passed, so
an active user is not logged out.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..cookies import delete_cookie_header, set_cookie_header

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

    from ..event import H3Event

__all__ = ["MemoryStore", "RedisStore", "Session", "SessionStore", "use_session"]

#: A secret shorter than this is refused: a Fernet key has 256 bits.
MIN_SECRET_LENGTH: Final = 32
#: Characters of sealed token per cookie; with the name and attributes a cookie stays
#: well under the 4,096 bytes RFC 6265 §6.1 asks browsers to accept at least.
DEFAULT_CHUNK_SIZE: Final = 3800
#: Most chunk cookies per session (about 38 KB of token): a larger session belongs in a store.
DEFAULT_MAX_CHUNKS: Final = 10
_CHUNKED: Final = "__chunked__"
_COOKIE_DEFAULTS: Final[dict[str, Any]] = {
    "path": "/",
    "domain": None,
    "secure": True,
    "httponly": True,
    "samesite": "lax",
    "partitioned": False,
}
_HKDF_INFO: Final = b"h3green session v1"

Clock = Callable[[], float]


class SessionStore(Protocol):
    """Where session data lives when it should not travel in the cookie."""

    def get(self, session_id: str) -> dict[str, Any] | None:
        """The data saved for *session_id*, or None (never saved, expired, evicted)."""

    def set(self, session_id: str, data: dict[str, Any], ttl: float | None) -> None:
        """Save *data*, to be forgotten after *ttl* seconds (None: keep while there is room)."""

    def delete(self, session_id: str) -> None:
        """Forget *session_id* (nothing happens if it is unknown)."""


class MemoryStore:
    """Sessions in this process's memory: the ``max_entries`` most recently saved ones.

    For one process (tests, development); several workers need a shared store.
    """

    __slots__ = ("_clock", "_entries", "max_entries")

    def __init__(self, max_entries: int = 10_000, *, clock: Clock = time.time) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float | None, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session_id: str) -> dict[str, Any] | None:
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        expires, text = entry
        if expires is not None and self._clock() >= expires:
            del self._entries[session_id]
            return None
        # A copy (through JSON, as any shared store would): the caller cannot change
        # what is saved behind its back.
        data: dict[str, Any] = json.loads(text)
        return data

    def set(self, session_id: str, data: dict[str, Any], ttl: float | None) -> None:
        entries = self._entries
        entries.pop(session_id, None)
        entries[session_id] = (None if ttl is None else self._clock() + ttl, json.dumps(data))
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def delete(self, session_id: str) -> None:
        self._entries.pop(session_id, None)


class RedisStore:
    """Sessions in Redis, shared by every worker and machine: ``RedisStore(redis.Redis())``.

    *client* is a redis-py client (``pip install redis``) made by the application, with
    its own address, pool and TLS settings. Each session is one string key
    ``prefix + id`` holding JSON, with Redis's own expiry (``PX``) when the session has a
    ``max_age`` or ``idle_timeout``; without either, keys stay until Redis evicts them.
    """

    __slots__ = ("client", "prefix")

    def __init__(self, client: Any, *, prefix: str = "h3green:session:") -> None:
        self.client = client
        self.prefix = prefix

    def get(self, session_id: str) -> dict[str, Any] | None:
        raw = self.client.get(self.prefix + session_id)
        if raw is None:
            return None
        data = json.loads(raw)
        return data if isinstance(data, dict) else None

    def set(self, session_id: str, data: dict[str, Any], ttl: float | None) -> None:
        expiry = None if ttl is None else max(1, math.ceil(ttl * 1000))
        self.client.set(self.prefix + session_id, json.dumps(data), px=expiry)

    def delete(self, session_id: str) -> None:
        self.client.delete(self.prefix + session_id)


def _fernet() -> Any:
    try:
        from cryptography import fernet
    except ImportError:
        raise RuntimeError("sessions need the cryptography package: pip install 'h3green[session]'") from None
    return fernet


@functools.lru_cache(maxsize=32)
def _sealer(secret_list: tuple[str, ...]) -> MultiFernet:
    fernet = _fernet()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    keys = []
    for secret in secret_list:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret.encode())
        keys.append(fernet.Fernet(base64.urlsafe_b64encode(key)))
    return fernet.MultiFernet(keys)  # type: ignore[no-any-return]


def _check_secrets(secret: str | Sequence[str]) -> tuple[str, ...]:
    secret_list = (secret,) if isinstance(secret, str) else tuple(secret)
    if not secret_list:
        raise ValueError("session secret list is empty")
    for item in secret_list:
        if not isinstance(item, str) or len(item) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"each session secret must be a str of at least {MIN_SECRET_LENGTH} characters "
                "(secrets.token_urlsafe(32) makes one)"
            )
    return secret_list


def _cookie_attributes(cookie: Mapping[str, Any] | None) -> dict[str, Any]:
    attributes = dict(_COOKIE_DEFAULTS)
    if cookie:
        unknown = set(cookie) - set(_COOKIE_DEFAULTS)
        if unknown:
            raise ValueError(
                f"unknown session cookie attribute(s) {sorted(unknown)}; "
                f"known: {sorted(_COOKIE_DEFAULTS)} (max_age is use_session's own argument)"
            )
        attributes.update(cookie)
    return attributes


class Session:
    """One client's session: ``id``, ``data`` (a dict), ``update()`` and ``clear()``.

    Change the data through ``update`` (or call it with no argument after changing
    ``data`` in place): that is what writes the cookie (and the store).
    """

    __slots__ = ("_config", "_event", "created_at", "data", "id", "touched_at")

    def __init__(
        self,
        event: H3Event,
        config: _Config,
        *,
        session_id: str,
        data: dict[str, Any],
        created_at: float,
        touched_at: float,
    ) -> None:
        self._event = event
        self._config = config
        #: A random, unguessable id (it changes when the session is cleared).
        self.id = session_id
        self.data = data
        #: When the session started (``clock()`` seconds), for ``max_age``.
        self.created_at = created_at
        #: When the session was last written, for ``idle_timeout``.
        self.touched_at = touched_at

    def __repr__(self) -> str:
        return f"<Session {self.id[:8]}... keys={sorted(self.data)}>"

    def update(self, mapping: Mapping[str, Any] | None = None, /, **values: Any) -> None:
        """Merge *mapping* and *values* into ``data`` and save the session.

        The data must be JSON-serialisable: anything else raises ``TypeError`` here.
        """
        if mapping:
            self.data.update(mapping)
        self.data.update(values)
        self._save()

    def clear(self) -> None:
        """Forget the data and start over under a new id (what logging out should do)."""
        store = self._config.store
        if store is not None:
            store.delete(self.id)
        self.id = _new_id()
        self.data = {}
        self.created_at = self._config.clock()
        self._save()

    def _save(self) -> None:
        config = self._config
        now = self.touched_at = config.clock()
        payload: dict[str, Any] = {"i": self.id, "c": self.created_at, "t": now}
        if config.store is None:
            payload["d"] = self.data
        else:
            config.store.set(self.id, self.data, config.lifetime(self.created_at, now))
        token = _sealer(config.secrets).encrypt(json.dumps(payload, separators=(",", ":")).encode())
        config.stage(self._event, token.decode("ascii"), self.created_at, now)


def _new_id() -> str:
    return secrets.token_urlsafe(24)


class _Config:
    """``use_session``'s arguments, checked once per call."""

    __slots__ = (
        "attributes",
        "chunk_size",
        "clock",
        "idle_timeout",
        "max_age",
        "max_chunks",
        "name",
        "secrets",
        "store",
    )

    def __init__(  # noqa: PLR0913 - documented keyword-only options
        self,
        *,
        secret: str | Sequence[str],
        name: str,
        max_age: float | None,
        idle_timeout: float | None,
        cookie: Mapping[str, Any] | None,
        store: SessionStore | None,
        clock: Clock,
        chunk_size: int,
        max_chunks: int,
    ) -> None:
        self.secrets = _check_secrets(secret)
        set_cookie_header(name, "")  # a name that is not a token raises ValueError now
        for label, value in (("max_age", max_age), ("idle_timeout", idle_timeout)):
            if value is not None and not value > 0:
                raise ValueError(f"session {label} must be > 0 seconds or None, got {value!r}")
        if chunk_size < 100 or max_chunks < 1:
            raise ValueError("session chunk_size must be >= 100 and max_chunks >= 1")
        self.name = name
        self.max_age = max_age
        self.idle_timeout = idle_timeout
        self.attributes = _cookie_attributes(cookie)
        self.store = store
        self.clock = clock
        self.chunk_size = chunk_size
        self.max_chunks = max_chunks

    def lifetime(self, created_at: float, now: float) -> float | None:
        """Seconds the session has left from *now* (None: no limit)."""
        limits = []
        if self.max_age is not None:
            limits.append(created_at + self.max_age - now)
        if self.idle_timeout is not None:
            limits.append(self.idle_timeout)
        return min(limits) if limits else None

    def expired(self, created_at: float, touched_at: float, now: float) -> bool:
        if self.max_age is not None and now - created_at >= self.max_age:
            return True
        return self.idle_timeout is not None and now - touched_at >= self.idle_timeout

    # -- cookies -------------------------------------------------------------------------

    def read_token(self, cookies: Mapping[str, str]) -> str | None:
        """The sealed token the request carries, chunks joined (None: none, or broken)."""
        value = cookies.get(self.name)
        if not value or not value.startswith(_CHUNKED):
            return value or None
        count = value[len(_CHUNKED) :]
        if not count.isdigit() or not 1 <= int(count) <= self.max_chunks:
            return None
        parts = [cookies.get(f"{self.name}.{index}") for index in range(1, int(count) + 1)]
        if not all(parts):
            return None
        return "".join(parts)  # type: ignore[arg-type]

    def stage(self, event: H3Event, token: str, created_at: float, now: float) -> None:
        """Stage the ``Set-Cookie`` headers for *token*, replacing any staged before."""
        size = self.chunk_size
        chunks = [token[start : start + size] for start in range(0, len(token), size)]
        if len(chunks) > self.max_chunks:
            raise ValueError(
                f"session {self.name!r} needs {len(chunks)} cookies of {size} characters, more "
                f"than max_chunks={self.max_chunks}: keep large sessions in a store"
            )
        attributes = dict(self.attributes)
        lifetime = self.lifetime(created_at, now)
        if lifetime is not None:
            attributes["max_age"] = max(1, math.ceil(lifetime))
        name = self.name
        ours = {name, *(f"{name}.{index}" for index in range(1, self.max_chunks + 1))}
        headers = event.res.headers
        staged = [value for value in headers.getall("set-cookie") if value.partition("=")[0] not in ours]
        headers.pop("set-cookie")
        for value in staged:
            headers.append("set-cookie", value)
        if len(chunks) == 1:
            event.set_cookie(name, token, **attributes)
        else:
            event.set_cookie(name, f"{_CHUNKED}{len(chunks)}", **attributes)
            for index, chunk in enumerate(chunks, 1):
                event.set_cookie(f"{name}.{index}", chunk, **attributes)
        # Chunks the browser holds from a larger session before would be joined again.
        cookies = event.cookies
        path, domain = attributes["path"], attributes["domain"]
        for index in range(len(chunks) + 1 if len(chunks) > 1 else 1, self.max_chunks + 1):
            if f"{name}.{index}" in cookies:
                event.append_header(
                    "set-cookie", delete_cookie_header(f"{name}.{index}", path=path, domain=domain)
                )

    def unseal(self, event: H3Event) -> Session | None:
        """The session the request's cookie holds, if it is intact and current."""
        token = self.read_token(event.cookies)
        if token is None:
            return None
        fernet = _fernet()
        try:
            plain = _sealer(self.secrets).decrypt(token.encode("ascii"))
        except (fernet.InvalidToken, UnicodeEncodeError):
            return None
        try:
            payload = json.loads(plain)
            session_id, created_at, touched_at = payload["i"], float(payload["c"]), float(payload["t"])
        except (ValueError, TypeError, KeyError):  # sealed by us, so only after a format change
            return None
        if not isinstance(session_id, str) or self.expired(created_at, touched_at, self.clock()):
            return None
        data = payload.get("d") if self.store is None else self.store.get(session_id)
        if not isinstance(data, dict):
            return None
        return Session(
            event, self, session_id=session_id, data=data, created_at=created_at, touched_at=touched_at
        )


def use_session(  # noqa: PLR0913 - documented keyword-only options
    event: H3Event,
    *,
    secret: str | Sequence[str],
    name: str = "h3",
    max_age: float | None = None,
    idle_timeout: float | None = None,
    cookie: Mapping[str, Any] | None = None,
    store: SessionStore | None = None,
    clock: Clock = time.time,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_chunks: int = DEFAULT_MAX_CHUNKS,
) -> Session:
    """The request's session, read from its cookie, or a new one (its cookie set at once).

    ``secret``: a str of at least 32 characters, or a list of them, newest first (it
    seals; all of them unseal). ``max_age``: seconds a session lives from its start;
    ``idle_timeout``: seconds it lives without being written. ``cookie``: attributes
    (``path``, ``domain``, ``secure``, ``httponly``, ``samesite``, ``partitioned``) over
    the defaults ``HttpOnly; Secure; SameSite=Lax; Path=/`` -- ``{"secure": False}`` for
    plain-HTTP development. ``store``: keep the data server-side (``MemoryStore()``).
    ``clock``: what "now" is, in seconds (tests pass a fake one).

    Calling it again for the same request and *name* returns the same ``Session``.
    """
    key = f"h3green.session:{name}"
    cached = event.context.get(key)
    if isinstance(cached, Session):
        return cached
    config = _Config(
        secret=secret,
        name=name,
        max_age=max_age,
        idle_timeout=idle_timeout,
        cookie=cookie,
        store=store,
        clock=clock,
        chunk_size=chunk_size,
        max_chunks=max_chunks,
    )
    session = config.unseal(event)
    if session is None:
        now = clock()
        session = Session(event, config, session_id=_new_id(), data={}, created_at=now, touched_at=now)
        session._save()
    elif idle_timeout is not None and clock() - session.touched_at > idle_timeout / 2:
        session._save()  # renew the lease of an active session
    event.context[key] = session
    return session
