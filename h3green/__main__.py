"""Command line: ``python -m h3green module:app [--host H] [--port P] [options]``, or the
``h3green`` console script, which is the same.

gevent's monkey patching has already happened when this module runs: ``h3green/__init__``
patches first when it is being imported on the way to ``python -m h3green`` or the
``h3green`` script, before anything else imports ``socket`` or ``threading``. Every field
of ``h3green.Config`` is also a flag (``--max-body-size 2097152``, ``--sse-heartbeat 30``...).

``--reload`` does not serve: it runs the same command without ``--reload`` as a child
process and restarts it when a ``.py`` file changes (``watchfiles``, the extra
``h3green[reload]``), so every restart imports the app afresh.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import logging
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from .app import H3
from .config import Config, field_kind, parse_field
from .server import serve

__all__ = ["load_app", "main"]

_SKIPPED_FIELDS = {"access_log", "sse_shutdown_event"}


class AppLoadError(Exception):
    """The ``module:app`` argument does not name an H3 app.

    ``details`` is the traceback of an exception the app's own code raised while being
    imported (file and line of the user's code, importlib's frames left out), or "".
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def _user_traceback(exc: BaseException) -> str:
    """*exc*'s traceback without the frames of this module and of importlib."""
    error = traceback.TracebackException.from_exception(exc)
    frames = [
        frame
        for frame in error.stack
        if frame.filename != __file__ and not frame.filename.startswith("<frozen importlib")
    ]
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.StackSummary.from_list(frames).format()
    lines += error.format_exception_only()
    return "".join(lines)


def load_app(spec: str) -> H3:
    """Import ``package.module:attr`` or ``path/to/file.py:attr`` (attr defaults to ``app``)."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if not module_name:
        raise AppLoadError(f"invalid app {spec!r}: expected module:app or path/to/file.py:app")
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            path = os.path.abspath(module_name)
            if not os.path.isfile(path):
                raise AppLoadError(f"no such file: {module_name}")
            sys.path.insert(0, os.path.dirname(path))
            name = os.path.splitext(os.path.basename(path))[0]
            file_spec = importlib.util.spec_from_file_location(name, path)
            assert file_spec is not None and file_spec.loader is not None
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[name] = module
            file_spec.loader.exec_module(module)
        else:
            if "" not in sys.path and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except AppLoadError:
        raise
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise AppLoadError(f"cannot import {module_name!r}: {exc}") from None
        # Something the app imports is missing: show where.
        raise AppLoadError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}", _user_traceback(exc)
        ) from None
    except Exception as exc:
        raise AppLoadError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}", _user_traceback(exc)
        ) from None
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(app, H3):
        raise AppLoadError(f"{spec!r} is a {type(app).__name__}, not an h3green.H3 app")
    return app


def _flag_parser(name: str) -> Callable[[str], Any]:
    """``Config``'s own parser for the flag of field *name* (as for ``H3GREEN_*``)."""

    def parse(text: str) -> Any:
        try:
            return parse_field(name, text, "--" + name.replace("_", "-"))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535, 0 for any free port)")
    return port


def _prog() -> str:
    script = os.path.splitext(os.path.basename(sys.argv[0]))[0] if sys.argv else ""
    return "h3green" if script == "h3green" else "python -m h3green"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="Serve an h3green app (gevent monkey patching is applied first).",
    )
    parser.add_argument("app", help="the app to serve: module:app or path/to/file.py:app")
    parser.add_argument("--version", action="version", version=f"h3green {__version__}")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=3000, help="port to bind (default 3000, 0 for any)")
    parser.add_argument(
        "--reload",
        action="store_true",
        help="restart when a .py file under the current directory (or the app file's) "
        "changes; for development (needs h3green[reload])",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="logging level (default info)",
    )
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log each request on logger h3green.access (default on)",
    )
    limits = parser.add_argument_group("server limits (see h3green.server.Config)")
    for field in dataclasses.fields(Config):
        if field.name in _SKIPPED_FIELDS:
            continue
        limits.add_argument(
            "--" + field.name.replace("_", "-"),
            type=_flag_parser(field.name),
            default=None,
            metavar=field_kind(field).removesuffix(" | None").upper(),
            help=f"default {field.default!r}",
        )
    return parser


def _reload(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Serve in a child process, restarted on every change to a ``.py`` file."""
    try:
        import watchfiles
    except ImportError:
        print(
            "h3green: error: --reload needs the watchfiles package: pip install 'h3green[reload]'",
            file=sys.stderr,
        )
        return 2
    module = args.app.partition(":")[0]
    paths = {os.getcwd()}
    if module.endswith(".py") or os.sep in module:
        paths.add(os.path.dirname(os.path.abspath(module)))
    command = shlex.join([sys.executable, "-m", "h3green", *(a for a in argv if a != "--reload")])
    logging.getLogger("h3green").info("h3green reloading on changes under %s", ", ".join(sorted(paths)))
    watchfiles.run_process(
        *sorted(paths), target=command, target_type="command", watch_filter=watchfiles.PythonFilter()
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.reload:
        return _reload(args, argv)
    try:
        app = load_app(args.app)
    except AppLoadError as exc:
        if exc.details:
            print(exc.details, file=sys.stderr, end="")
        print(f"h3green: error: {exc}", file=sys.stderr)
        return 2
    options = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(Config)
        if field.name not in _SKIPPED_FIELDS and getattr(args, field.name) is not None
    }
    try:
        Config(**options)  # a bad value (say --http-parser) is a usage error, not a traceback
    except ValueError as exc:
        print(f"h3green: error: {exc}", file=sys.stderr)
        return 2
    try:
        serve(app, args.host, args.port, access_log=args.access_log, **options)
    except OSError as exc:
        print(
            f"h3green: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
