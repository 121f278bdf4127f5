"""``h3green.__all__`` is the deliberate public surface: it must match the package namespace."""

from __future__ import annotations

import types

import h3green


def public_names() -> set[str]:
    """Names the package namespace exposes: not private, not a submodule, not the version."""
    return {
        name
        for name, value in vars(h3green).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def test_all_matches_the_public_namespace() -> None:
    exported = set(h3green.__all__)
    assert len(exported) == len(h3green.__all__), "duplicate names in __all__"
    missing = public_names() - exported
    stale = exported - public_names()
    assert not missing, f"public but not in __all__: {sorted(missing)}"
    assert not stale, f"in __all__ but not defined: {sorted(stale)}"


def test_every_exported_name_resolves() -> None:
    for name in h3green.__all__:
        assert getattr(h3green, name) is not None


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from h3green import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(h3green.__all__)


def test_core_names_are_public() -> None:
    core = {
        "H3",
        "H3Event",
        "HTTPError",
        "Response",
        "SSEWriter",
        "Server",
        "serve",
        "html",
        "redirect",
        "no_content",
    }
    assert core <= set(h3green.__all__)


def test_version_is_a_string() -> None:
    assert isinstance(h3green.__version__, str) and h3green.__version__.count(".") == 2
