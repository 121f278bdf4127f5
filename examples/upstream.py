"""A small service for examples/portal.py to proxy: a clock that streams ticks over SSE.

    python examples/upstream.py                      # http://127.0.0.1:3001 (PORT to change)
    python -m h3green examples.upstream:app --port 3001

``TICK_INTERVAL`` (seconds, default 1) sets the pause between ticks.
"""

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import os
import time

from h3green import H3, H3Event, SSEWriter, serve

INTERVAL = float(os.environ.get("TICK_INTERVAL", "1.0"))

app = H3()


@app.get("/status")
def status(event: H3Event) -> dict[str, object]:
    return {"service": "clock", "time": time.time()}


def ticks(writer: SSEWriter) -> None:
    n = 0
    while writer.is_active:
        n += 1
        writer.send_event({"tick": n, "time": round(time.time(), 3)}, event="tick", id=str(n))
        time.sleep(INTERVAL)  # monkey patched: yields to every other client


@app.get("/ticks")
def tick_stream(event: H3Event) -> None:
    event.start_sse()
    event.set_stream_callback(ticks)


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3001")))
