"""Servers under test that run as ``python bench/servers.py KIND PORT``.

Kinds:

* ``h3green``: ``h3green.Server`` with the benchmark app, access log off;
* ``h3green-h11``: the same on the pure-Python h11 parser instead of httptools;
* ``h3green-log``: the same with the access log on, at INFO, written to a file;
* ``pywsgi``: ``gevent.pywsgi`` with a raw WSGI app, no access log, ``TCP_NODELAY``;
* ``h3green-sse``: SSE endpoints for the memory, fan-out and throughput figures;
* ``pywsgi-sse``: ``gevent.pywsgi`` holding idle streams, for the memory comparison.

The gunicorn peers and the bare h11 loop are started by the runner with their own
command lines (``bench/bare_h11.py``, ``gunicorn --chdir bench apps:...``).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import apps  # noqa: E402
import gevent  # noqa: E402
import gevent.event  # noqa: E402
from gevent import pywsgi  # noqa: E402

# Enough for 10k streams plus headroom; the runner raises RLIMIT_NOFILE to match.
SSE_MAX_CONNECTIONS = 20000


def serve_h3green(port: int, access_log: bool, http_parser: str = "auto") -> None:
    import h3green
    from h3green import Server

    print(f"serving h3green from {os.path.dirname(h3green.__file__)}", file=sys.stderr, flush=True)

    if access_log:
        handler = logging.FileHandler(os.environ.get("H3GREEN_BENCH_LOG", os.devnull))
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access = logging.getLogger("h3green.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    Server(apps.make_h3_app(), "127.0.0.1", port, access_log=access_log, http_parser=http_parser).serve_forever()


class _NoDelayServer(pywsgi.WSGIServer):  # type: ignore[misc]
    """pywsgi leaves Nagle on; without TCP_NODELAY keep-alive stalls on delayed ACKs."""

    def handle(self, sock: socket.socket, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def serve_pywsgi(port: int, app: Callable[..., Any] = apps.wsgi_app) -> None:
    _NoDelayServer(("127.0.0.1", port), app, log=None, backlog=2048).serve_forever()


def serve_h3green_sse(port: int) -> None:
    from h3green import H3, H3Event, Server, SSEWriter
    from h3green.sse import Channel

    app = H3()
    channel = Channel(history=0)

    @app.get("/")
    def ready(event: H3Event) -> dict[str, Any]:
        return {"listeners": len(channel)}

    @app.get("/stream")
    def stream(event: H3Event) -> None:
        # An idle subscriber: the callback parks in Channel.listen until an event comes.
        event.start_sse(heartbeat=0)
        event.set_stream_callback(channel.listen)

    @app.get("/publish")
    def publish(event: H3Event) -> dict[str, Any]:
        # The event carries the monotonic clock at the publish call (system-wide on
        # Linux), so the client process can time the fan-out to its last reader.
        started = time.monotonic()
        channel.publish(repr(started), event="tick")
        return {"t0": started, "listeners": len(channel), "publish_s": time.monotonic() - started}

    @app.get("/firehose")
    def firehose(event: H3Event) -> None:
        count = int(event.get_query("n") or "10000")

        def send_all(writer: SSEWriter) -> None:
            with writer:
                for i in range(count):
                    writer.send_event("0123456789abcdef", event="tick", id=str(i))

        event.start_sse(heartbeat=0)
        event.set_stream_callback(send_all)

    Server(app, "127.0.0.1", port, access_log=False, max_connections=SSE_MAX_CONNECTIONS).serve_forever()


def serve_pywsgi_sse(port: int) -> None:
    never = gevent.event.Event()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        if environ["PATH_INFO"] != "/stream":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            yield b"ok"
            return
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        yield b": open\n\n"
        never.wait()  # idle: the greenlet parks here until the client leaves

    serve_pywsgi(port, app)


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "h3green":
        serve_h3green(port, access_log=False)
    elif kind == "h3green-h11":
        serve_h3green(port, access_log=False, http_parser="h11")
    elif kind == "h3green-log":
        serve_h3green(port, access_log=True)
    elif kind == "pywsgi":
        serve_pywsgi(port)
    elif kind == "h3green-sse":
        serve_h3green_sse(port)
    elif kind == "pywsgi-sse":
        serve_pywsgi_sse(port)
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
