"""JSON encoding, in one place: response bodies, SSE data and error bodies all use it.

Strategy: the standard library's C encoder does the work; ``default`` is consulted only
for a value it does not know, so plain dicts, lists, strings and numbers never reach
Python code here. What ``default`` adds, the values handlers commonly return:

=====================================  ===============================================
value                                  JSON
=====================================  ===============================================
``datetime``, ``date``, ``time``       ISO 8601 string (``isoformat()``)
``uuid.UUID``                          its canonical string
``decimal.Decimal``                    its exact string (``"1.10"``): a float would
                                       lose digits, as Django and Pydantic also judge
``enum.Enum``                          its ``value``, encoded in turn
dataclass instance                     object of its fields, encoded in turn
``set``, ``frozenset``                 array
=====================================  ===============================================

Anything else raises ``TypeError`` naming the type; ``H3(json_default=fn)`` adds an
application's own types (``fn`` is tried first and raises ``TypeError`` to decline).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from collections.abc import Callable
from typing import Any, Final

__all__ = ["JSONDefault", "is_json_extra", "json_dumps", "make_json_dumps"]

JSONDefault = Callable[[Any], Any]

_EXTRA_TYPES: Final = (
    datetime.date,  # datetime.datetime is a date
    datetime.time,
    uuid.UUID,
    decimal.Decimal,
    enum.Enum,
    set,
    frozenset,
)


def is_json_extra(value: object) -> bool:
    """True for a value the built-in ``default`` encodes (the table above)."""
    return isinstance(value, _EXTRA_TYPES) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    )


def _type_name(value: object) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _default(value: Any) -> Any:
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    raise TypeError(f"cannot encode a {_type_name(value)} as JSON (H3(json_default=...) can add it)")


def make_json_dumps(default: JSONDefault | None = None) -> Callable[[Any], bytes]:
    """A compact UTF-8 JSON encoder; *default*, if given, is tried before the built-ins."""
    fallback = _default
    if default is not None:
        user_default = default

        def fallback(value: Any) -> Any:
            try:
                return user_default(value)
            except TypeError:
                return _default(value)

    # PERF: json.dumps with any non-default option builds a new JSONEncoder on every call;
    # one configured encoder, made once, gives the same output (~1% of a JSON response).
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=fallback).encode

    def dumps(value: Any) -> bytes:
        return encode(value).encode()

    dumps.__doc__ = "Compact UTF-8 JSON, as h3green writes it everywhere."
    return dumps


json_dumps: Final = make_json_dumps()
