"""gevent monkey patching: when h3green does it itself, and what to say when it came late.

This module imports nothing but ``sys``: ``h3green/__init__`` consults it before anything
imports ``socket``, ``ssl`` or ``threading``.
"""

from __future__ import annotations

import sys

__all__ = ["late_references", "patching_problems", "run_as_command"]


def run_as_command() -> bool:
    """True when this import is on the way to ``python -m h3green`` or the ``h3green``
    console script, both of which import this package before any of their own code runs.

    ``sys.argv[0]`` is "-m" only while the interpreter is still locating the main module;
    a console script's is the script's own path (``.../bin/h3green``, ``h3green.exe``).
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-m":
        return sys.orig_argv[sys.orig_argv.index("-m") + 1 :][:1] == ["h3green"]
    return argv0.replace("\\", "/").rsplit("/", 1)[-1] in ("h3green", "h3green.exe", "h3green-script.py")


# What a module imported before patch_all() may hold on to and then block the whole
# process with: the blocking entry points gevent replaces. (Locks and thread ids are left
# out: the standard library itself keeps early references to them, harmlessly.)
_BLOCKING: dict[str, tuple[str, ...]] = {
    "socket": ("socket", "create_connection", "getaddrinfo", "gethostbyname", "socketpair", "fromfd"),
    "time": ("sleep",),
    "select": ("select", "poll", "epoll"),
    "ssl": ("SSLContext", "SSLSocket"),
    "subprocess": ("Popen",),
    "threading": ("Thread", "Event"),
    "queue": ("Queue",),
}


def late_references() -> dict[str, list[str]]:
    """Modules holding an original (unpatched) blocking function or class, by module name.

    gevent's ``monkey.is_object_patched`` and ``monkey.get_original`` say what was
    replaced and what it replaced; a module that ran ``from time import sleep`` before
    ``patch_all()`` still holds that original and blocks every greenlet when it calls it.
    """
    from gevent import monkey

    originals: dict[int, str] = {}
    for module_name, names in _BLOCKING.items():
        for name in names:
            if monkey.is_object_patched(module_name, name):
                originals[id(monkey.get_original(module_name, name))] = f"{module_name}.{name}"
    found: dict[str, list[str]] = {}
    if not originals:
        return found
    for module_name, module in list(sys.modules.items()):
        # Private and C modules (_socket, posix) are where the originals come from.
        if module_name != "__main__" and (
            module_name[:1] == "_" or module_name in _BLOCKING or module_name in ("posix", "nt")
        ):
            continue
        if module_name.partition(".")[0] == "gevent":
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        held = sorted({originals[id(value)] for value in list(namespace.values()) if id(value) in originals})
        if held:
            found[module_name] = held
    return found


def patching_problems() -> str | None:
    """One warning about gevent patching, or None when all is well."""
    from gevent import monkey

    if not monkey.is_module_patched("socket") or not monkey.is_module_patched("time"):
        return (
            "gevent monkey patching is not active: blocking calls will stall every client "
            "(run gevent.monkey.patch_all() first, or use python -m h3green)"
        )
    late = late_references()
    if not late:
        return None
    held = "; ".join(f"{name} ({', '.join(items)})" for name, items in sorted(late.items()))
    return (
        f"gevent monkey patching came after these modules were imported and kept blocking "
        f"originals: {held}. Calls through them stall every client: call "
        f"gevent.monkey.patch_all() before importing them (first lines of your script)"
    )
