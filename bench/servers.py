"""Servers under test that run as ``python bench/servers.py KIND PORT``.

Kinds:

* ``h3green``: ``h3green.Server`` with the benchmark app, access log off;
* ``h3green-h11``: the same on the pure-Python h11 parser instead of httptools;
* ``h3green-log``: the same with the access log on, to a file (``access_log_file``);
* ``h3green-logging``: the access log through the ``h3green.access`` logger instead, at
  INFO, to a ``logging.FileHandler``;
* ``pywsgi``: ``gevent.pywsgi`` with a raw WSGI app, no access log, ``TCP_NODELAY``;
* ``h3green-sse``: the SSE app of ``bench/sse_h3green.py``, for the SSE figures.

The other peers are started by the runner with their own command lines (the bare loops
``bench/floor.py``, ``bench/bare_httptools.py``, ``bench/bare_h11.py``; ``gunicorn --chdir
bench apps:...``; ``uvicorn --app-dir bench apps:...``; the SSE peers in
``bench/sse_gevent.py`` and ``bench/sse_asgi.py``).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import apps  # noqa: E402
from gevent import pywsgi  # noqa: E402


def serve_h3green(port: int, access_log: bool | str, http_parser: str = "auto") -> None:
    import h3green
    from h3green import Server

    print(f"serving h3green from {os.path.dirname(h3green.__file__)}", file=sys.stderr, flush=True)

    options: dict[str, Any] = {"access_log": bool(access_log), "http_parser": http_parser}
    if access_log == "logging":
        handler = logging.FileHandler(os.environ.get("H3GREEN_BENCH_LOG", os.devnull))
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access = logging.getLogger("h3green.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    elif access_log:
        options["access_log_file"] = os.environ.get("H3GREEN_BENCH_LOG", os.devnull)
    Server(apps.make_h3_app(), "127.0.0.1", port, **options).serve_forever()


class _NoDelayServer(pywsgi.WSGIServer):  # type: ignore[misc]
    """pywsgi leaves Nagle on; without TCP_NODELAY keep-alive stalls on delayed ACKs."""

    def handle(self, sock: socket.socket, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def serve_pywsgi(port: int, app: Callable[..., Any] = apps.wsgi_app) -> None:
    _NoDelayServer(("127.0.0.1", port), app, log=None, backlog=2048).serve_forever()


def serve_h3green_sse(port: int) -> None:
    from sse_h3green import MAX_CONNECTIONS, make_app

    from h3green import Server

    Server(make_app(), "127.0.0.1", port, access_log=False, max_connections=MAX_CONNECTIONS).serve_forever()


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "h3green":
        serve_h3green(port, access_log=False)
    elif kind == "h3green-h11":
        serve_h3green(port, access_log=False, http_parser="h11")
    elif kind == "h3green-log":
        serve_h3green(port, access_log=True)
    elif kind == "h3green-logging":
        serve_h3green(port, access_log="logging")
    elif kind == "pywsgi":
        serve_pywsgi(port)
    elif kind == "h3green-sse":
        serve_h3green_sse(port)
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
