"""``h3green.utils``: a deliberate public surface that imports without any optional extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import h3green.utils

OURS = {
    "MemoryStore",
    "RedisStore",
    "Session",
    "SessionStore",
    "basic_auth",
    "get_validated_query",
    "proxy_request",
    "read_validated_body",
    "require_basic_auth",
    "use_session",
}


def test_all_is_sorted_unique_and_matches_the_namespace() -> None:
    exported = h3green.utils.__all__
    assert exported == sorted(exported) and len(set(exported)) == len(exported)
    public = {
        name
        for name, value in vars(h3green.utils).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(exported)
    assert set(exported) >= OURS


def test_the_package_imports_without_the_optional_extras() -> None:
    # A fresh interpreter where cryptography, urllib3 and pydantic cannot be imported.
    code = textwrap.dedent(
        """
        import sys
        for name in ("cryptography", "urllib3", "pydantic"):
            sys.modules[name] = None
        import h3green.utils
        print(sorted(h3green.utils.__all__) == h3green.utils.__all__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from h3green.utils import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(h3green.utils.__all__)
