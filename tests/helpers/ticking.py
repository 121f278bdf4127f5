"""The one ticking SSE app: counter streams and a ``/ping``, in-process or for the CLI.

``counter_app(interval)`` builds it for a test; ``python -m h3green helpers.ticking:app``
(from ``tests/``) serves it with ``TICK_INTERVAL`` seconds between events. The streams
pause with ``gevent.sleep``, which the CLI's monkey patching also makes of ``time.sleep``
(the README's counter).
"""

from __future__ import annotations

import os

import gevent

from h3green import H3, H3Event, SSEWriter

__all__ = ["app", "counter_app"]


def counter_app(interval: float, count: int = 10_000, closed: list[int] | None = None) -> H3:
    """Streams at ``/events`` send ``counter`` events every *interval* seconds, *count*
    of them, then a ``done`` event; each appends to *closed* when its ``on_close`` hooks run."""
    app = H3()

    @app.get("/ping")
    def ping(event: H3Event) -> str:
        return "pong"

    def stream_counter(writer: SSEWriter) -> None:
        if closed is not None:
            writer.on_close(lambda: closed.append(1))
        with writer:
            for n in range(count):
                writer.send_event(str(n), event="counter", id=str(n))
                gevent.sleep(interval)
            writer.send_event("done", event="done")

    @app.get("/events")
    def counter_handler(event: H3Event) -> None:
        event.start_sse()
        event.set_stream_callback(stream_counter)

    return app


app = counter_app(float(os.environ.get("TICK_INTERVAL", "0.05")), count=100_000)
