"""Token streaming, the way chat UIs show a language model's answer as it is written.

``GET /generate?prompt=...`` answers with ``event: token`` events (one JSON object per
token, so spaces and newlines survive) and ends with ``event: done`` carrying the whole
text. The "model" here is a stand-in that echoes canned words with a small delay; swap in a
real client's streaming iterator and nothing else changes. This one uses the H3-style
``EventStream`` return value: the generator runs in the stream's own greenlet.

    python examples/llm_stream.py                    # http://127.0.0.1:3000 (PORT to change)
    python -m h3green examples.llm_stream:app

``TOKEN_DELAY`` (seconds, default 0.05) sets the pause between tokens.
"""

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import os
import time
from collections.abc import Iterator

from h3green import H3, EventStream, H3Event, HTTPError, SSEEvent, html, serve

TOKEN_DELAY = float(os.environ.get("TOKEN_DELAY", "0.05"))
MAX_PROMPT = 2000

app = H3()

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>h3green token streaming</title>
<form id="f"><input id="prompt" size="60" value="Tell me about greenlets"> <button>Ask</button></form>
<pre id="out" style="white-space: pre-wrap"></pre>
<script>
let source = null;
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault();
  if (source) source.close();
  const out = document.getElementById("out");
  out.textContent = "";
  const prompt = document.getElementById("prompt").value;
  source = new EventSource("/generate?prompt=" + encodeURIComponent(prompt));
  source.addEventListener("token", (e) => { out.textContent += JSON.parse(e.data).token; });
  source.addEventListener("done", () => source.close());
  source.addEventListener("error", () => source.close());
};
</script>
"""


def fake_model(prompt: str) -> Iterator[str]:
    """Yield the answer token by token, as a streaming model client would."""
    answer = (
        f'You asked: "{prompt}".\n'
        "Greenlets are cooperative: each one runs until it waits for I/O, "
        "and gevent switches to another. That is why a blocking-style loop streams "
        "to thousands of clients without stalling any of them."
    )
    for word in answer.split(" "):
        time.sleep(TOKEN_DELAY)  # the model thinking; yields under monkey patching
        yield word + " "


def generate_events(prompt: str) -> Iterator[SSEEvent]:
    text = []
    for index, token in enumerate(fake_model(prompt)):
        text.append(token)
        yield SSEEvent({"index": index, "token": token}, event="token", id=str(index))
    yield SSEEvent({"text": "".join(text).rstrip(), "tokens": len(text)}, event="done")


@app.get("/")
def index(event: H3Event) -> object:
    return html(PAGE)


@app.get("/generate")
def generate(event: H3Event) -> EventStream:
    prompt = event.get_query("prompt", "") or ""
    if not prompt.strip():
        raise HTTPError(400, "the prompt query parameter is required")
    if len(prompt) > MAX_PROMPT:
        raise HTTPError(413, f"the prompt is longer than {MAX_PROMPT} characters")
    return EventStream(generate_events(prompt))


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3000")))
