"""SSE peers on gevent: a ``gevent.pywsgi`` generator and a Flask generator under
``gunicorn -k gevent``, each written the way its users write a broadcast.

Both answer the endpoints of ``bench/sse_h3green.py`` (``/``, ``/stream``, ``/detected``,
``/publish``, ``/firehose``). A subscriber is a generator with a queue of its own
(bounded, 256 events, as a careful user bounds it), registered in a module-level set;
``/publish`` formats the event once and puts it in every queue; an idle generator waits
on its queue with a timeout and sends a ``: ping`` comment when it expires (15 s, the
interval sse-starlette and FastAPI use; ``H3GREEN_BENCH_PING`` overrides it). The ping
is what lets these servers notice a departed client at all: a WSGI generator learns of it
only when a write fails, so disconnect detection takes one to two ping intervals here.

pywsgi is stock (Nagle on): what its users run.

    python bench/sse_gevent.py PORT                                   # pywsgi
    gunicorn -k gevent --worker-connections 20000 --chdir bench sse_gevent:flask_app
"""

from __future__ import annotations

import os
import queue
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

PING = float(os.environ.get("H3GREEN_BENCH_PING", "15"))
QUEUE_SIZE = 256
_MAX_TOKENS = 1000
_FIREHOSE_EVENT = "event: tick\nid: {}\ndata: 0123456789abcdef\n\n"


class Broadcast:
    """One queue per subscriber; a publish puts the formatted event in each."""

    def __init__(self, make_queue: Callable[[], Any]) -> None:
        self.make_queue = make_queue
        self.subscribers: set[Any] = set()
        self.detected: OrderedDict[str, float] = OrderedDict()

    def publish(self) -> dict[str, Any]:
        started = time.monotonic()
        payload = f"event: tick\ndata: {started!r}\n\n".encode()
        for q in list(self.subscribers):
            try:
                q.put_nowait(payload)
            except queue.Full:  # gevent.queue.Full is queue.Full
                pass  # a subscriber this far behind misses the event
        return {"t0": started, "listeners": len(self.subscribers), "pid": os.getpid()}

    def subscribe(self, token: str | None) -> Iterator[bytes]:
        q = self.make_queue()
        self.subscribers.add(q)
        try:
            yield b": open\n\n"  # WSGI sends the head with the first non-empty chunk
            while True:
                try:
                    yield q.get(timeout=PING)
                except queue.Empty:
                    yield b": ping\n\n"
        finally:
            self.subscribers.discard(q)
            if token:
                self.detected[token] = time.monotonic()
                if len(self.detected) > _MAX_TOKENS:
                    self.detected.popitem(last=False)


def firehose(count: int) -> Iterator[bytes]:
    for i in range(count):
        yield _FIREHOSE_EVENT.format(i).encode()


# -- gevent.pywsgi, raw WSGI ----------------------------------------------------------


def make_wsgi_app(broadcast: Broadcast) -> Callable[..., Any]:
    import json

    sse_headers = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        path = environ["PATH_INFO"]
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if path == "/stream":
            start_response("200 OK", sse_headers)
            return broadcast.subscribe(query.get("token"))
        if path == "/firehose":
            start_response("200 OK", sse_headers)
            return firehose(int(query.get("n", "10000")))
        if path == "/publish":
            answer: Any = broadcast.publish()
        elif path == "/detected":
            answer = {"t": broadcast.detected.get(query.get("token", ""))}
        else:
            answer = {"listeners": len(broadcast.subscribers), "pid": os.getpid()}
        body = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return iter([body])

    return app


def serve_pywsgi(port: int) -> None:
    import gevent.queue
    from gevent import pywsgi

    app = make_wsgi_app(Broadcast(lambda: gevent.queue.Queue(QUEUE_SIZE)))
    pywsgi.WSGIServer(("127.0.0.1", port), app, log=None, backlog=2048).serve_forever()


# -- Flask (gunicorn -k gevent) -------------------------------------------------------


def make_flask_app() -> Any:
    from flask import Flask, Response, request

    app = Flask("sse")
    # queue.Queue: gunicorn's gevent worker monkey-patches it to wait cooperatively.
    broadcast = Broadcast(lambda: queue.Queue(QUEUE_SIZE))

    @app.get("/")
    def ready() -> Any:
        return {"listeners": len(broadcast.subscribers), "pid": os.getpid()}

    @app.get("/stream")
    def stream() -> Any:
        events = broadcast.subscribe(request.args.get("token"))
        return Response(events, mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/publish")
    def publish() -> Any:
        return broadcast.publish()

    @app.get("/detected")
    def detected() -> Any:
        return {"t": broadcast.detected.get(request.args.get("token", ""))}

    @app.get("/firehose")
    def hose() -> Any:
        return Response(firehose(int(request.args.get("n", "10000"))), mimetype="text/event-stream")

    return app


def __getattr__(name: str) -> Any:
    if name == "flask_app":
        return make_flask_app()
    raise AttributeError(name)


if __name__ == "__main__":
    import sys

    from gevent import monkey

    monkey.patch_all()
    serve_pywsgi(int(sys.argv[1]))
