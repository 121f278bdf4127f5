"""The SSE counter: H3Z's example, the blocking way, on gevent.

``counter_handler`` starts the event stream, stores ``stream_counter`` as its callback and
returns; once the response head is on the wire h3green runs ``stream_counter(writer)`` in a
greenlet of its own. With gevent's monkey patching ``time.sleep`` yields to every other
client, so thousands of counters run at once.

    python examples/counter.py                       # http://127.0.0.1:3000 (PORT to change)
    python -m h3green examples.counter:app --port 3000

``COUNTER_INTERVAL`` (seconds, default 1) shortens the pause between events.
"""

if __name__ == "__main__":
    # Before anything imports socket or time: blocking calls must yield to other clients.
    from gevent import monkey

    monkey.patch_all()

import os
import time

from h3green import H3, H3Event, SSEWriter, html, serve

COUNT = 30
INTERVAL = float(os.environ.get("COUNTER_INTERVAL", "1.0"))

app = H3()

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>h3green counter</title>
<h1>Counter: <span id="n">-</span></h1>
<p id="status">connecting...</p>
<script>
const source = new EventSource("/events");
source.addEventListener("counter", (e) => {
  document.getElementById("n").textContent = e.data;
  document.getElementById("status").textContent = "streaming (id " + e.lastEventId + ")";
});
source.addEventListener("done", () => {
  document.getElementById("status").textContent = "done";
  source.close();
});
source.onerror = () => { document.getElementById("status").textContent = "reconnecting..."; };
</script>
"""


@app.get("/")
def index(event: H3Event) -> object:
    return html(PAGE)


def stream_counter(writer: SSEWriter) -> None:
    with writer:  # closes the stream at the end, however the loop ends
        for n in range(COUNT):
            writer.send_event(data=str(n), event="counter", id=str(n))
            time.sleep(INTERVAL)  # monkey patched: yields to every other client
        writer.send_event(data="done", event="done")


@app.get("/events")
def counter_handler(event: H3Event) -> None:
    event.start_sse()
    event.set_stream_callback(stream_counter)


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3000")))
