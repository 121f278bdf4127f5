"""A chat room over Server-Sent Events: H3Z's chat example, done right.

* ``GET /chat/stream?username=ada`` -- the event stream: a ``system`` welcome, the last 10
  messages, then live ``message`` events and ``user-event`` joins and leaves. A browser
  that reconnects sends ``Last-Event-ID`` and gets exactly the messages it missed.
* ``POST /chat/send`` with ``{"username": "ada", "message": "hi"}`` -- say something.

Every payload is built with a JSON encoder (H3Z formatted strings by hand, so a quote in a
message broke the stream), and the fan-out is an ``h3green.sse.Channel``: a reader that
stops reading is dropped instead of slowing the room down.

In one process by default. With ``REDIS_URL`` set, the room is a Redis stream shared by
every process and machine (docs/scaling-out.md), and so is the online list: a Redis hash
of name -> open streams, counted up when a stream opens and down when it closes. A
worker killed without closing its streams (SIGKILL, a crash) leaves its users listed;
``DEL h3green:chat:online`` when no one is connected (at deploy) resets it.

    python examples/chat.py                          # http://127.0.0.1:3000 (PORT to change)
    python -m h3green examples.chat:app
    REDIS_URL=redis://127.0.0.1:6379/0 gunicorn -k h3green.workers.H3Worker -w 4 examples.chat:app
"""

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import os
import time
from collections import Counter
from typing import Any

from h3green import H3, H3Event, HTTPError, SSEWriter, html, serve
from h3green.sse import Channel

MAX_NAME = 32
MAX_MESSAGE = 2000
REPLAY = 10
REDIS_URL = os.environ.get("REDIS_URL")

app = H3()
#: Open streams per name, in this process (the online list without Redis).
online: Counter[str] = Counter()

if REDIS_URL:
    from h3green.redis import RedisBackend

    backend = RedisBackend(REDIS_URL)
    room = Channel("chat", backend=backend, history=100)
    ONLINE_KEY = backend.prefix + "chat:online"
    # Down by one, and gone at zero, in one step: two workers never race on the delete.
    _LEAVE = (
        "if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end"
    )

    def arrive(username: str) -> None:
        backend.redis.hincrby(ONLINE_KEY, username, 1)

    def depart(username: str) -> None:
        backend.redis.eval(_LEAVE, 1, ONLINE_KEY, username)

    def everyone() -> list[str]:
        return sorted(
            name.decode() if isinstance(name, bytes) else name for name in backend.redis.hkeys(ONLINE_KEY)
        )

else:
    room = Channel(history=100)

    def arrive(username: str) -> None:
        online[username] += 1

    def depart(username: str) -> None:
        online[username] -= 1
        if online[username] <= 0:
            del online[username]

    def everyone() -> list[str]:
        return sorted(online)


PAGE = """<!doctype html>
<meta charset="utf-8">
<title>h3green chat</title>
<p><label>Name <input id="name" value="guest"></label> <button id="join">Join</button></p>
<ul id="log"></ul>
<form id="f"><input id="msg" size="60" autocomplete="off"> <button>Send</button></form>
<script>
const log = (text) => {
  const li = document.createElement("li");
  li.textContent = text;   // textContent, never innerHTML: messages are untrusted
  document.getElementById("log").appendChild(li);
};
let source = null;
document.getElementById("join").onclick = () => {
  if (source) source.close();
  const name = document.getElementById("name").value;
  source = new EventSource("/chat/stream?username=" + encodeURIComponent(name));
  source.addEventListener("system", (e) => log("* " + JSON.parse(e.data).message));
  source.addEventListener("message", (e) => {
    const m = JSON.parse(e.data);
    log(m.username + ": " + m.message);
  });
  source.addEventListener("user-event", (e) => {
    const u = JSON.parse(e.data);
    log("* " + u.username + (u.type === "join" ? " joined" : " left"));
  });
};
document.getElementById("f").onsubmit = async (e) => {
  e.preventDefault();
  const input = document.getElementById("msg");
  await fetch("/chat/send", {
    method: "POST",
    headers: {"content-type": "application/json"},
    body: JSON.stringify({username: document.getElementById("name").value, message: input.value}),
  });
  input.value = "";
};
</script>
"""


def _username(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise HTTPError(400, "username is required")
    name = value.strip()
    if len(name) > MAX_NAME:
        raise HTTPError(400, f"username is longer than {MAX_NAME} characters")
    return name


@app.get("/")
def index(event: H3Event) -> object:
    return html(PAGE)


@app.get("/chat/stream")
def chat_stream(event: H3Event) -> None:
    username = _username(event.get_query("username"))
    event.start_sse()
    event.context["username"] = username
    event.set_stream_callback(stream_chat)


def stream_chat(writer: SSEWriter) -> None:
    username: str = writer.event.context["username"]
    arrive(username)
    writer.send_event(
        {"message": f"Welcome, {username}!", "online": everyone()},
        event="system",
    )
    room.publish({"type": "join", "username": username}, event="user-event", store=False)

    def leave() -> None:
        depart(username)
        room.publish({"type": "leave", "username": username}, event="user-event", store=False)

    writer.on_close(leave)
    room.listen(writer, replay=REPLAY)


@app.post("/chat/send")
def chat_send(event: H3Event) -> dict[str, Any]:
    body = event.read_json()
    if not isinstance(body, dict):
        raise HTTPError(400, "expected a JSON object")
    username = _username(body.get("username"))
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        raise HTTPError(400, "message is required")
    if len(message) > MAX_MESSAGE:
        raise HTTPError(413, f"message is longer than {MAX_MESSAGE} characters")
    event_id = room.publish({"username": username, "message": message, "time": time.time()}, event="message")
    return {"ok": True, "id": event_id}


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3000")))
