"""SSE peers on uvicorn: sse-starlette and FastAPI's own SSE, each written the way its
users write a broadcast.

Both answer the endpoints of ``bench/sse_h3green.py`` (``/``, ``/stream``, ``/detected``,
``/publish``, ``/firehose``). A subscriber is an async generator with an
``asyncio.Queue`` of its own (bounded, 256 events), registered in a module-level set;
``/publish`` puts the event in every queue and each generator yields it in the library's
event type (sse-starlette's dict, FastAPI's ``ServerSentEvent``), which encodes it per
subscriber. Keep-alive pings: each library's default, 15 s (``H3GREEN_BENCH_PING``
overrides it, for the runner's smoke mode).

FastAPI's native SSE (``fastapi.sse.EventSourceResponse`` on a generator endpoint) is used
when the installed FastAPI has it; otherwise a ``StreamingResponse`` with
``text/event-stream`` (``FASTAPI_SSE`` says which).

    uvicorn --app-dir bench sse_asgi:starlette_app
    uvicorn --app-dir bench sse_asgi:fastapi_app
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at run
# time, and some name types imported inside a function.
import asyncio
import importlib.util
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

PING = float(os.environ.get("H3GREEN_BENCH_PING", "15"))
QUEUE_SIZE = 256
_MAX_TOKENS = 1000
FASTAPI_SSE = (
    "native (fastapi.sse.EventSourceResponse)"
    if importlib.util.find_spec("fastapi") and importlib.util.find_spec("fastapi.sse")
    else "StreamingResponse, text/event-stream (this FastAPI has no fastapi.sse)"
)


class Broadcast:
    """One ``asyncio.Queue`` per subscriber; a publish puts the event's data in each."""

    def __init__(self) -> None:
        self.subscribers: set[asyncio.Queue[str]] = set()
        self.detected: OrderedDict[str, float] = OrderedDict()

    def publish(self) -> dict[str, Any]:
        started = time.monotonic()
        data = repr(started)
        for q in list(self.subscribers):
            try:
                q.put_nowait(data)
            except asyncio.QueueFull:
                pass  # a subscriber this far behind misses the event
        return {"t0": started, "listeners": len(self.subscribers), "pid": os.getpid()}

    async def subscribe(self, token: str | None) -> AsyncIterator[str]:
        q: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.add(q)
        try:
            while True:
                yield await q.get()
        finally:
            self.subscribers.discard(q)
            if token:
                self.detected[token] = time.monotonic()
                if len(self.detected) > _MAX_TOKENS:
                    self.detected.popitem(last=False)

    def ready(self) -> dict[str, Any]:
        return {"listeners": len(self.subscribers), "pid": os.getpid()}


# -- sse-starlette ---------------------------------------------------------------------


def make_starlette_app() -> Any:
    from sse_starlette.sse import EventSourceResponse
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    broadcast = Broadcast()

    async def ready(request: Request) -> Response:
        return JSONResponse(broadcast.ready())

    async def stream(request: Request) -> Response:
        async def events() -> AsyncIterator[dict[str, str]]:
            async for data in broadcast.subscribe(request.query_params.get("token")):
                yield {"event": "tick", "data": data}

        return EventSourceResponse(events(), ping=PING)

    async def publish(request: Request) -> Response:
        return JSONResponse(broadcast.publish())

    async def detected(request: Request) -> Response:
        return JSONResponse({"t": broadcast.detected.get(request.query_params.get("token", ""))})

    async def firehose(request: Request) -> Response:
        count = int(request.query_params.get("n", "10000"))

        async def events() -> AsyncIterator[dict[str, str]]:
            for i in range(count):
                yield {"event": "tick", "id": str(i), "data": "0123456789abcdef"}

        return EventSourceResponse(events(), ping=PING)

    routes = [Route("/", ready), Route("/stream", stream), Route("/publish", publish),
              Route("/detected", detected), Route("/firehose", firehose)]  # fmt: skip
    return Starlette(routes=routes)


# -- FastAPI ---------------------------------------------------------------------------


def make_fastapi_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    broadcast = Broadcast()

    @app.get("/")
    async def ready():  # no return annotation: FastAPI would validate against it
        return broadcast.ready()

    @app.get("/publish")
    async def publish():
        return broadcast.publish()

    @app.get("/detected")
    async def detected(token: str = ""):
        return {"t": broadcast.detected.get(token)}

    if importlib.util.find_spec("fastapi.sse"):
        import fastapi.routing
        from fastapi.sse import EventSourceResponse, ServerSentEvent

        fastapi.routing._PING_INTERVAL = PING  # type: ignore[attr-defined]  # 15 s unless overridden

        @app.get("/stream", response_class=EventSourceResponse)
        async def stream(token: str | None = None) -> AsyncIterator[ServerSentEvent]:
            async for data in broadcast.subscribe(token):
                yield ServerSentEvent(raw_data=data, event="tick")

        @app.get("/firehose", response_class=EventSourceResponse)
        async def firehose(n: int = 10000) -> AsyncIterator[ServerSentEvent]:
            for i in range(n):
                yield ServerSentEvent(raw_data="0123456789abcdef", event="tick", id=str(i))

    else:  # pragma: no cover - older FastAPI
        from fastapi.responses import StreamingResponse

        @app.get("/stream")
        async def stream(token: str | None = None):
            async def events() -> AsyncIterator[str]:
                yield ": open\n\n"
                async for data in broadcast.subscribe(token):
                    yield f"event: tick\ndata: {data}\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        @app.get("/firehose")
        async def firehose(n: int = 10000):
            async def events() -> AsyncIterator[str]:
                for i in range(n):
                    yield f"event: tick\nid: {i}\ndata: 0123456789abcdef\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

    return app


def __getattr__(name: str) -> Any:
    if name == "starlette_app":
        return make_starlette_app()
    if name == "fastapi_app":
        return make_fastapi_app()
    raise AttributeError(name)
