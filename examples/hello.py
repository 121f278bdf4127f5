"""Hello, world: the smallest h3green app.

Run it with ``python examples/hello.py`` (PORT from the environment, 3000 by default) or
``python -m h3green examples.hello:app``, then ``curl http://127.0.0.1:3000/hello/you``.
"""

if __name__ == "__main__":
    # Patch before anything imports socket, so blocking calls yield to other clients.
    from gevent import monkey

    monkey.patch_all()

import os

from h3green import H3, H3Event, serve

app = H3()


@app.get("/")
def index(event: H3Event) -> str:
    return "Hello from h3green!"


@app.get("/hello/:name")
def hello(event: H3Event) -> dict[str, str]:
    return {"hello": event.params["name"]}


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3000")))
