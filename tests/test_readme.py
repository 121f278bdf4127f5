"""Every Python block of README.md and docs/*.md runs here, as a reader would paste it.

A block is executed as a module of its own, with ``h3green.serve`` replaced by a recorder
(a block may end by serving forever, as real programs do) and ``gevent.monkey.patch_all``
by a no-op (the test process must stay as it is). A block preceded by the HTML comment
``<!-- readme-test: NAME -->`` is then checked by ``check_NAME`` below, which drives the
app it built through ``TestClient``: the documentation's promises are asserted, not just
its syntax. ``<!-- readme-test: skip -->`` exempts a block that needs what a test run does
not have (a Redis server, say); the exemption is visible in the document itself.

The documents are README.md and the pages it links for the API (docs/guide.md); a docs
page with examples of its own runs them in its feature's test module.
"""

from __future__ import annotations

import base64
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent.monkey
import pytest

import h3green
import h3green.server
from h3green import H3
from h3green.testing import TestClient

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "docs" / "guide.md"]
SKIP = "skip"
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<name>[\w-]+) -->\n)?```python\n(?P<code>.*?)^```", re.S | re.M)


class Block:
    def __init__(self, path: Path, line: int, name: str | None, code: str) -> None:
        self.path = path
        self.line = line
        self.name = name
        self.code = code

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_blocks(path: Path, text: str) -> list[Block]:
    blocks = []
    for found in BLOCK.finditer(text):
        line = text.count("\n", 0, found.start("code")) + 1
        if found.group("name") != SKIP:
            blocks.append(Block(path, line, found.group("name"), found.group("code")))
    return blocks


BLOCKS = [block for path in DOCUMENTS for block in parse_blocks(path, path.read_text())]
Served = list[tuple[H3, dict[str, Any]]]


def run_block(block: Block, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], Served]:
    served: Served = []

    def fake_serve(app: H3, host: str = "127.0.0.1", port: int = 3000, **options: Any) -> None:
        served.append((app, {"host": host, "port": port, **options}))

    monkeypatch.setattr(h3green, "serve", fake_serve)
    monkeypatch.setattr(h3green.server, "serve", fake_serve)
    monkeypatch.setattr(gevent.monkey, "patch_all", lambda *args, **kwargs: None)
    module = types.ModuleType(f"readme_block_{block.line}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    # Line numbers in a traceback point into the document: pad the code to its place.
    code = "\n" * (block.line - 1) + block.code
    exec(compile(code, str(block.path), "exec"), module.__dict__)
    return module.__dict__, served


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_block_runs(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace, served = run_block(block, monkeypatch)
    if block.name is not None:
        CHECKS[block.name](namespace, served)


def test_documents_have_blocks_and_every_named_block_a_check() -> None:
    readme = [b for b in BLOCKS if b.path.name == "README.md"]
    assert len(readme) >= 2
    names = [b.name for b in BLOCKS if b.name is not None]
    assert len(names) == len(set(names)), "a block name is used twice"
    assert set(names) == set(CHECKS), "every named block needs a check, every check a block"


def test_parsing_names_lines_and_skips() -> None:
    text = (
        "# Doc\n\n```python\nx = 1\n```\n\n<!-- readme-test: skip -->\n```python\nimport redis\n```\n"
        "<!-- readme-test: demo -->\n```python\ny = 2\n```\n```sh\nls\n```\n"
    )
    blocks = parse_blocks(ROOT / "doc.md", text)
    assert [(b.line, b.name, b.code) for b in blocks] == [(4, None, "x = 1\n"), (13, "demo", "y = 2\n")]
    assert blocks[0].where == "doc.md:4"


# -- checks ----------------------------------------------------------------------------


def check_tour(ns: dict[str, Any], served: Served) -> None:
    app = ns["app"]
    assert served == [(app, {"host": "127.0.0.1", "port": 3000})]
    client = TestClient(app)
    res = client.get("/users/1")
    assert (res.status, res.json(), res.headers["x-served-by"]) == (200, {"id": "1", "name": "Ada"}, "h3green")
    res = client.get("/users/9")
    assert res.status == 404
    assert res.json()["data"] == {"id": "9"}
    assert res.headers["x-served-by"] == "h3green"  # middleware decorates error responses too
    res = client.post("/users", json={"id": "2", "name": "Grace"})
    assert (res.status, res.headers["location"], res.json()["name"]) == (201, "/users/2", "Grace")
    assert client.post("/users", data=b"{nope", headers={"content-type": "application/json"}).status == 400
    assert client.get("/v1/status").json() == {"ok": True}
    assert ("GET", "/users/:id") in app.routes


def check_utils(ns: dict[str, Any], served: Served) -> None:
    client = TestClient(ns["app"])
    res = client.options(
        "/items",
        headers={"origin": "https://example.com", "access-control-request-method": "POST"},
    )
    assert res.status == 204
    assert res.headers["access-control-allow-origin"] == "https://example.com"
    assert res.headers["access-control-allow-credentials"] == "true"
    res = client.get("/assets/index.html")
    assert res.status == 200 and res.headers["etag"]
    assert client.get("/assets/index.html", headers={"if-none-match": res.headers["etag"]}).status == 304
    res = client.post("/login", data={"user": "ada"})
    assert res.json()["hello"] == "ada" and "h3=" in res.headers["set-cookie"]
    assert client.get("/admin/").status == 401
    auth = {"authorization": "Basic " + base64.b64encode(b"admin:s3cret:with:colons").decode()}
    assert client.get("/admin/", headers=auth).status == 200
    assert client.post("/items", json={"name": "pen"}).json() == {"name": "pen"}
    res = client.post("/items", json={"price": 1})
    assert (res.status, res.json()["message"]) == (400, "Validation failed")


def check_responses(ns: dict[str, Any], served: Served) -> None:
    client = TestClient(ns["app"])
    res = client.get("/")
    assert (res.headers["content-type"], res.text) == ("text/html; charset=utf-8", "<h1>Hello</h1>")
    res = client.get("/old")
    assert (res.status, res.headers["location"]) == (301, "/")
    assert client.delete("/items/3").status == 204
    res = client.get("/report.csv")
    assert (res.headers["content-type"], res.headers["cache-control"]) == ("text/csv", "no-store")


def check_json(ns: dict[str, Any], served: Served) -> None:
    res = TestClient(ns["app"]).get("/orders/7")
    assert res.json() == {"id": 7, "total": "12.50", "placed": "2026-12-02", "tags": ["gift"]}


def check_hooks(ns: dict[str, Any], served: Served) -> None:
    res = TestClient(ns["app"]).get("/teapot")
    assert res.status == 418
    assert re.fullmatch(r"app;dur=\d+\.\d", res.headers["server-timing"])
    [error] = ns["errors"]
    assert error.startswith("GET /teapot: HTTPError(")


def check_middleware(ns: dict[str, Any], served: Served) -> None:
    client = TestClient(ns["app"])
    for path, status in (("/hello", 200), ("/missing", 404)):
        res = client.get(path)
        assert res.status == status
        assert res.headers["access-control-allow-origin"] == "*"
        assert re.fullmatch(r"[0-9a-f]{32}", res.headers["x-request-id"])
    assert client.get("/hello", headers={"x-request-id": "abc"}).headers["x-request-id"] == "abc"
    res = client.options("/hello", headers={"access-control-request-method": "POST"})
    assert (res.status, res.headers["access-control-allow-methods"]) == (204, "GET, POST")


def check_routes(ns: dict[str, Any], served: Served) -> None:
    assert ns["app"].routes == [("*", "/health"), ("*", "/api"), ("*", "/api/**")]
    assert TestClient(ns["app"]).get("/api/users").json() == []


def check_eventstream(ns: dict[str, Any], served: Served) -> None:
    with TestClient(ns["app"]).stream("GET", "/progress") as stream:
        events = [(e.event, e.data, e.id) for e in stream.iter_events()]
    assert events == [
        ("progress", '{"percent":0}', "0"),
        ("progress", '{"percent":50}', "50"),
        ("progress", '{"percent":100}', "100"),
        ("done", "done", "100"),  # the last id seen stays the stream's (WHATWG)
    ]


def check_channel(ns: dict[str, Any], served: Served) -> None:
    client = TestClient(ns["app"])
    assert client.post("/news", json={"nope": 1}).status == 400
    first = client.post("/news", json={"title": "one"})
    assert (first.status, first.json()) == (202, {"id": "1"})
    assert client.post("/news", json={"title": "two"}).json() == {"id": "2"}
    with client.stream("GET", "/news") as stream:
        events = stream.iter_events()
        replayed = [next(events), next(events)]
    assert [(e.event, e.json(), e.id) for e in replayed] == [
        ("news", {"title": "one"}, "1"),
        ("news", {"title": "two"}, "2"),
    ]


CHECKS: dict[str, Callable[[dict[str, Any], Served], None]] = {
    name.removeprefix("check_"): check
    for name, check in list(globals().items())
    if name.startswith("check_") and callable(check)
}
