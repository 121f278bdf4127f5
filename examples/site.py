"""A small site: static files, an upload form, a CORS-enabled JSON API and an SSE stream.

    python examples/site.py                          # http://127.0.0.1:3000 (PORT to change)
    python -m h3green examples.site:app --port 3000

* ``/``, ``/style.css``, ``/upload.html``... come from ``examples/public`` (``StaticFiles``
  as middleware: whatever is not a file goes on to the routes below);
* ``POST /upload`` takes ``multipart/form-data`` up to ``UPLOAD_LIMIT`` bytes and answers
  with what it received (name, size, SHA-256 of each file), reading every file in pieces;
* ``/api/...`` is a JSON API other sites may call from the browser: the origins listed in
  ``SITE_CORS_ORIGINS`` (comma-separated, default none) get CORS headers, others do not;
* ``/events`` is a Server-Sent Events clock, which the home page shows.
"""

if __name__ == "__main__":
    # Before anything imports socket or time: blocking calls must yield to other clients.
    from gevent import monkey

    monkey.patch_all()

import datetime
import hashlib
import os
import time
from pathlib import Path

from h3green import H3, H3Event, HTTPError, SSEWriter, serve
from h3green.utils import StaticFiles, UploadFile, cors, get_request_ip

PUBLIC = Path(__file__).parent / "public"
UPLOAD_LIMIT = int(os.environ.get("UPLOAD_LIMIT", str(100 * 1024 * 1024)))
ORIGINS = [o.strip() for o in os.environ.get("SITE_CORS_ORIGINS", "").split(",") if o.strip()]
TICK = float(os.environ.get("SITE_TICK", "1.0"))

app = H3()
# Files first; anything that is not a file (or not a GET/HEAD) falls through to the routes.
app.use(StaticFiles(PUBLIC, fallthrough=True, max_age=60))


@app.post("/upload")
def upload(event: H3Event) -> object:
    form = event.read_form(max_size=UPLOAD_LIMIT)  # uploads may be larger than JSON bodies
    files = []
    for name, value in form.files():
        digest = hashlib.sha256()
        for piece in value:  # 64 KiB at a time, whatever the file's size
            digest.update(piece)
        files.append(describe(name, value, digest.hexdigest()))
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    return {"fields": fields, "files": files}


def describe(name: str, upload: UploadFile, sha256: str) -> dict[str, object]:
    return {
        "field": name,
        "filename": upload.filename,
        "content_type": upload.content_type,
        "size": upload.size,
        "sha256": sha256,
    }


api = H3()
api.use(cors(origin=ORIGINS, methods=["GET", "POST"], allow_headers=["content-type"], max_age=600))


@api.get("/time")
def now(event: H3Event) -> object:
    return {"time": datetime.datetime.now(datetime.UTC).isoformat(), "client": get_request_ip(event)}


@api.post("/echo")
def echo(event: H3Event) -> object:
    body = event.read_json()
    if not isinstance(body, dict):
        raise HTTPError(400, "expected a JSON object")
    return {"echo": body}


app.mount("/api", api)


@app.get("/events")
def events(event: H3Event) -> None:
    event.start_sse()
    event.set_stream_callback(clock)


def clock(writer: SSEWriter) -> None:
    with writer:
        tick = 0
        while writer.is_active:
            writer.send_event(
                data=datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S"), event="tick", id=str(tick)
            )
            tick += 1
            time.sleep(TICK)  # monkey patched: yields to every other client


if __name__ == "__main__":
    serve(app, port=int(os.environ.get("PORT", "3000")))
