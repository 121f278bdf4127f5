"""Multi-valued mappings: request/response headers (case-insensitive) and query parameters.

Both keep every ``(name, value)`` pair in arrival order, because HTTP allows a name to
repeat (``Set-Cookie``, ``?tag=a&tag=b``). ``m[name]`` and ``m.get(name)`` give the first
value, ``m.getall(name)`` all of them; iterating gives each distinct name once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar, overload
from urllib.parse import parse_qsl

__all__ = ["Headers", "MultiDict", "QueryParams", "RequestHeaders"]

_D = TypeVar("_D")


class MultiDict:
    """An ordered multi-valued ``str -> str`` mapping."""

    __slots__ = ("_items",)

    def __init__(self, items: HeadersInit = None) -> None:
        self._items: list[tuple[str, str]] = []
        if items is not None:
            pairs = items.items() if isinstance(items, Mapping | MultiDict) else items
            for name, value in pairs:
                self.append(name, value)

    def _key(self, name: str) -> str:
        return name

    def append(self, name: str, value: str) -> None:
        """Add a value for *name*, keeping the ones already there."""
        self._items.append((self._key(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every value of *name* with *value*."""
        key = self._key(name)
        self._items = [item for item in self._items if item[0] != key]
        self.append(name, value)

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: _D) -> str | _D: ...
    def get(self, name: str, default: object = None) -> object:
        key = self._key(name)
        for k, v in self._items:
            if k == key:
                return v
        return default

    def getall(self, name: str) -> list[str]:
        key = self._key(name)
        return [v for k, v in self._items if k == key]

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair, repeated names included, in order."""
        return list(self._items)

    def keys(self) -> list[str]:
        return list(dict.fromkeys(k for k, _ in self._items))

    def to_dict(self) -> dict[str, str]:
        """``{name: first value}``."""
        out: dict[str, str] = {}
        for k, v in self._items:
            out.setdefault(k, v)
        return out

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        key = self._key(name)
        before = len(self._items)
        self._items = [item for item in self._items if item[0] != key]
        if len(self._items) == before:
            raise KeyError(name)

    def pop(self, name: str, default: str | None = None) -> str | None:
        value = self.get(name, default)
        key = self._key(name)
        self._items = [item for item in self._items if item[0] != key]
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._key(name)
        # PERF: a plain loop, not any() over a generator: asked on every response.
        for k, _ in self._items:  # noqa: SIM110
            if k == key:
                return True
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MultiDict):
            same_kind = type(self) is type(other) or (
                isinstance(self, Headers) and isinstance(other, Headers)
            )
            return same_kind and self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


#: What a headers argument accepts: a mapping, ``(name, value)`` pairs, or a ``Headers``
#: (a ``MultiDict``: every pair is kept, repeated names included).
HeadersInit = Mapping[str, str] | Iterable[tuple[str, str]] | MultiDict | None


class QueryParams(MultiDict):
    """Query-string parameters: ``?a=1&a=2&b`` gives ``getall("a") == ["1", "2"]``, ``b == ""``."""

    __slots__ = ()

    @classmethod
    def parse(cls, query: str) -> QueryParams:
        params = cls()
        if query:
            if "%" in query or "+" in query:
                params._items = parse_qsl(query, keep_blank_values=True)
            else:
                # PERF: nothing to decode, so parse_qsl's result is the split alone
                # (empty pieces skipped, a piece without "=" has the value ""): 0.36 us
                # against 0.94 for "fields=name,email".
                params._items = [
                    (name, value) for name, _, value in (p.partition("=") for p in query.split("&") if p)
                ]
        return params


def _check_header(name: str, value: str) -> None:
    # RFC 9110 §5.5: CR, LF and NUL are never valid in a field value; letting them through
    # would let a caller split the response (header injection).
    if not name or any(c in name for c in " \t\r\n:\x00"):
        raise ValueError(f"invalid header name {name!r}")
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"header {name!r} value contains CR, LF or NUL: {value!r}")


class Headers(MultiDict):
    """HTTP headers: names compare case-insensitively and are stored lower-case.

    Values set through the API are checked: CR, LF or NUL in a value raises ``ValueError``.
    """

    __slots__ = ()

    def _key(self, name: str) -> str:
        return name.lower()

    def append(self, name: str, value: str) -> None:
        value = str(value)
        _check_header(name, value)
        self._items.append((name.lower(), value))

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, str]]) -> Headers:
        """Wrap ``(lower-cased name, value)`` pairs already checked (no checks, no copy)."""
        headers = cls()
        headers._items = pairs
        return headers

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Wrap header pairs that a parser already validated and lower-cased (no checks)."""
        headers = cls()
        headers._items = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
        return headers


_ITEMS = MultiDict.__dict__["_items"]  # the slot's descriptor


class RequestHeaders(Headers):
    """A request's headers, decoded from the parser's byte pairs on first use.

    PERF: a handler that reads no header (most of a hello benchmark) never pays for
    decoding them: 0.09 us against 0.57 for wrk's three headers.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        # No super().__init__(): the items are made from *raw* on first use.
        self._raw: list[tuple[bytes, bytes]] | None = raw

    @property
    def _items(self) -> list[tuple[str, str]]:
        raw = self._raw
        if raw is not None:
            _ITEMS.__set__(self, [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw])
            self._raw = None
        items: list[tuple[str, str]] = _ITEMS.__get__(self)
        return items

    @_items.setter
    def _items(self, items: list[tuple[str, str]]) -> None:
        self._raw = None
        _ITEMS.__set__(self, items)
