"""h3green's SSE benchmark app: the endpoints every SSE peer in ``bench/`` answers alike.

* ``GET /``: ``{"listeners": n, "pid": ...}``, streams subscribed now (the runner waits on it);
* ``GET /stream?heartbeat=S&token=T``: an idle subscriber of the process's ``Channel``
  with a heartbeat every *S* seconds of idleness (default: ``H3GREEN_BENCH_PING``, the
  peers' ping interval, else off); with a token, the callback's ``finally`` records
  ``time.monotonic()`` when it runs, for the disconnect figure;
* ``GET /detected?token=T``: ``{"t": monotonic time the stream with that token ended, or null}``;
* ``GET /publish``: one event to every subscriber, carrying the monotonic clock at the
  call (system-wide on Linux, so another process can time the fan-out); with
  ``?only=PID`` a process with another pid declines (``"published": false``);
* ``GET /firehose?n=N``: one stream sending N small events as fast as it can.

``time.monotonic()`` is CLOCK_MONOTONIC, the same clock in every process on the machine:
the client takes its own reading when it closes a socket and subtracts it from the
server's. The head carries ``x-worker: <pid>`` so a client of ``gunicorn -w N`` knows
which worker's channel a stream listens to (``bench/scale.py``).

Run by ``bench/servers.py h3green-sse PORT`` and by gunicorn as ``sse_h3green:app``.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import Any

# Enough for 19,000 streams in one process under the 20,000 descriptor limit.
MAX_CONNECTIONS = 19500
_MAX_TOKENS = 1000  # detection times kept (oldest dropped first): bounded
HEARTBEAT = os.environ.get("H3GREEN_BENCH_PING", "0")


def make_app() -> Any:
    from h3green import H3, H3Event, SSEWriter
    from h3green.sse import Channel

    app = H3()
    channel = Channel(history=0)
    detected: OrderedDict[str, float] = OrderedDict()
    pid = str(os.getpid())

    @app.get("/")
    def ready(event: H3Event) -> dict[str, Any]:
        return {"listeners": len(channel), "pid": os.getpid()}

    @app.get("/stream")
    def stream(event: H3Event) -> None:
        token = event.get_query("token")
        heartbeat = float(event.get_query("heartbeat") or HEARTBEAT)

        def listen(writer: SSEWriter) -> None:
            # An idle subscriber: the callback parks in Channel.listen until an event comes.
            try:
                channel.listen(writer)
            finally:
                if token:
                    detected[token] = time.monotonic()
                    if len(detected) > _MAX_TOKENS:
                        detected.popitem(last=False)

        event.start_sse(heartbeat=heartbeat, headers={"x-worker": pid})
        event.set_stream_callback(listen)

    @app.get("/detected")
    def was_detected(event: H3Event) -> dict[str, Any]:
        return {"t": detected.get(event.get_query("token") or "")}

    @app.get("/publish")
    def publish(event: H3Event) -> dict[str, Any]:
        only = event.get_query("only")
        if only and only != pid:  # for one gunicorn worker: the others decline
            return {"pid": os.getpid(), "published": False}
        started = time.monotonic()
        channel.publish(repr(started), event="tick")
        return {
            "t0": started,
            "listeners": len(channel),
            "pid": os.getpid(),
            "publish_s": time.monotonic() - started,
        }

    @app.get("/firehose")
    def firehose(event: H3Event) -> None:
        count = int(event.get_query("n") or "10000")

        def send_all(writer: SSEWriter) -> None:
            with writer:
                for i in range(count):
                    writer.send_event("0123456789abcdef", event="tick", id=str(i))

        event.start_sse(heartbeat=0)
        event.set_stream_callback(send_all)

    return app


def __getattr__(name: str) -> Any:
    # gunicorn -k h3green.workers.H3Worker sse_h3green:app
    if name == "app":
        return make_app()
    raise AttributeError(name)
