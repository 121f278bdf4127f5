"""Porting a Flask app to h3green, one route at a time, without a flag day.

The legacy app is a small notes board in Flask: an HTML page with a form (``POST`` then
redirect), and a JSON API. The goal is live updates over Server-Sent Events, which a
synchronous Flask worker cannot hold open by the thousand. The port goes in steps, and the
site works after every one of them.

Step 1 -- mount, change nothing. The Flask app goes under ``/legacy`` of an ``H3`` app
(``app.mount("/legacy", legacy)``). Flask sees ``SCRIPT_NAME="/legacy"``, so ``url_for``
and its redirects keep working; one process serves both worlds::

    gunicorn -k h3green.workers.H3Worker examples.port_flask:app

Step 2 -- add the new thing natively. ``GET /updates`` is an h3green event stream fed by
an ``h3green.sse.Channel``. The legacy form handler publishes to the channel: Flask code
calls ``notes_channel.publish(...)`` like any function, because it runs in the same
process, on the same gevent loop.

Step 3 -- port routes as they are touched. ``GET /api/notes`` is now an h3green handler;
the Flask version still answers under ``/legacy/api/notes`` until every client has moved,
then it is deleted. Both read the same store, so nothing forks.

Step 4 -- when ``/legacy`` serves nothing anyone uses, drop the mount and Flask. (Flask is
an example/test extra of h3green, never a runtime dependency.)

Run it::

    python examples/port_flask.py          # http://127.0.0.1:3000/legacy/ (PORT to change)
    python -m h3green examples.port_flask:app
"""

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import os
from typing import Any

from flask import Flask, jsonify, redirect, render_template_string, request, url_for

from h3green import H3, H3Event, HTTPError, SSEWriter, serve
from h3green.sse import Channel

MAX_NOTE = 500

# -- shared state (both the Flask app and the h3green handlers use it) -------------------------

notes: list[dict[str, Any]] = []
notes_channel = Channel(history=50)


def add_note(text: str) -> dict[str, Any]:
    text = text.strip()
    if not text or len(text) > MAX_NOTE:
        raise ValueError(f"a note has 1 to {MAX_NOTE} characters")
    note = {"id": len(notes) + 1, "text": text}
    notes.append(note)
    notes_channel.publish(note, event="note")  # step 2: legacy code feeds the new stream
    return note


# -- the legacy Flask app, unchanged by the port ---------------------------------------------

legacy = Flask(__name__)

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>notes</title>
<form method="post" action="{{ url_for('create_note') }}">
  <input name="text" maxlength="500"> <button>Add</button>
</form>
{% if error %}<p role="alert">{{ error }}</p>{% endif %}
<ul id="notes">{% for note in notes %}<li>{{ note.text }}</li>{% endfor %}</ul>
<script>
// Step 2: the page listens to the new h3green stream.
new EventSource("/updates").addEventListener("note", (e) => {
  const li = document.createElement("li");
  li.textContent = JSON.parse(e.data).text;
  document.getElementById("notes").appendChild(li);
});
</script>
"""


@legacy.get("/")
def index() -> str:
    return render_template_string(PAGE, notes=notes, error=request.args.get("error"))


@legacy.post("/notes")
def create_note() -> Any:
    try:
        add_note(request.form.get("text", ""))
    except ValueError as exc:
        return redirect(url_for("index", error=str(exc)))
    return redirect(url_for("index"))


@legacy.get("/api/notes")
def list_notes() -> Any:
    return jsonify(notes)


@legacy.post("/api/notes")
def create_note_json() -> Any:
    payload = request.get_json(silent=True) or {}
    try:
        return jsonify(add_note(str(payload.get("text", "")))), 201
    except ValueError as exc:
        return jsonify(error=str(exc)), 400


# -- the h3green app around it ---------------------------------------------------------------

app = H3()
app.mount("/legacy", legacy)  # step 1


@app.get("/")
def home(event: H3Event) -> Any:
    from h3green import redirect as h3_redirect

    return h3_redirect("/legacy/")


@app.get("/updates")
def updates(event: H3Event) -> None:  # step 2
    event.start_sse()

    def stream(writer: SSEWriter) -> None:
        notes_channel.listen(writer)

    event.set_stream_callback(stream)


@app.get("/api/notes")
def api_notes(event: H3Event) -> Any:  # step 3: ported; /legacy/api/notes still answers
    return notes


@app.post("/api/notes")
def api_create_note(event: H3Event) -> Any:
    payload = event.read_json()
    if not isinstance(payload, dict):
        raise HTTPError(400, "expected a JSON object")
    try:
        note = add_note(str(payload.get("text", "")))
    except ValueError as exc:
        raise HTTPError(400, str(exc)) from None
    event.set_status(201)
    return note


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3000")))
