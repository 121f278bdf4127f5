"""The no-stall test's server app, run by ``python -m h3green nostall_app:app`` in a process
of its own so that neither the test's tracer nor its client work slows the server down.

Counter streams send an event every ``NOSTALL_INTERVAL`` seconds with ``time.sleep`` (the
CLI has monkey patched it), exactly like the README's counter; ``/ping`` is the plain GET
whose latency the test measures.
"""

import os
import time

from h3green import H3, H3Event, SSEWriter

INTERVAL = float(os.environ.get("NOSTALL_INTERVAL", "0.05"))

app = H3()


@app.get("/ping")
def ping(event: H3Event) -> str:
    return "pong"


def stream_counter(writer: SSEWriter) -> None:
    with writer:
        for n in range(100_000):
            writer.send_event(str(n), event="counter", id=str(n))
            time.sleep(INTERVAL)


@app.get("/events")
def counter_handler(event: H3Event) -> None:
    event.start_sse()
    event.set_stream_callback(stream_counter)
