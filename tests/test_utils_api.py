"""``h3green.utils.__all__`` is the deliberate public surface of the web utilities."""

from __future__ import annotations

import types

import h3green.utils


def test_all_matches_the_public_namespace_and_is_sorted() -> None:
    public = {
        name
        for name, value in vars(h3green.utils).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(h3green.utils.__all__) == public
    assert h3green.utils.__all__ == sorted(h3green.utils.__all__)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from h3green.utils import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(h3green.utils.__all__)
