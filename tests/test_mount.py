"""``mount(prefix, sub_app)`` for H3 sub-apps: prefix stripping, own middleware, hooks, 404s."""

from __future__ import annotations

from typing import Any

import pytest

from h3green import H3, H3Event, Response
from h3green.testing import TestClient


def make_parent() -> tuple[H3, H3, list[str]]:
    trail: list[str] = []
    sub = H3(
        on_request=lambda e: trail.append(f"sub-req {e.path}"),
        on_response=lambda e, r: trail.append(f"sub-res {r.status}"),
    )

    @sub.get("/")
    def sub_root(event: H3Event) -> dict[str, Any]:
        return {"sub": "root", "path": event.path}

    @sub.get("/items/:id")
    def sub_item(event: H3Event) -> dict[str, Any]:
        return {"id": event.params["id"], "path": event.path, "target": event.target}

    @sub.use
    def tag(event: H3Event, next: Any) -> Response:
        response: Response = next()
        response.headers.set("x-sub", "1")
        return response

    parent = H3(on_request=lambda e: trail.append(f"parent-req {e.path}"))
    parent.get("/", lambda e: "parent root")
    parent.get("/api-docs", lambda e: "not under the mount")
    parent.mount("/api/", sub)
    return parent, sub, trail


def test_prefix_is_stripped() -> None:
    parent, _, trail = make_parent()
    client = TestClient(parent)
    res = client.get("/api/items/7?q=1")
    assert res.json() == {"id": "7", "path": "/items/7", "target": "/api/items/7?q=1"}
    assert res.headers["x-sub"] == "1"
    assert trail == ["parent-req /api/items/7", "sub-req /items/7", "sub-res 200"]


@pytest.mark.parametrize("path", ["/api", "/api/"])
def test_prefix_itself_is_the_sub_root(path: str) -> None:
    parent, _, _ = make_parent()
    assert TestClient(parent).get(path).json()["sub"] == "root"


def test_prefix_matches_whole_segments_only() -> None:
    parent, _, _ = make_parent()
    client = TestClient(parent)
    assert client.get("/api-docs").text == "not under the mount"
    assert client.get("/").text == "parent root"


def test_sub_app_404_and_405_are_its_own() -> None:
    parent, _, trail = make_parent()
    client = TestClient(parent)
    res = client.get("/api/nope")
    assert res.status == 404
    assert res.json()["message"] == "Cannot find any route matching /nope"
    # next() hands middleware every response, the sub-app's 404 included.
    assert res.headers["x-sub"] == "1"
    res = client.post("/api/items/1")
    assert (res.status, res.headers["allow"]) == (405, "GET, HEAD, OPTIONS")
    assert "sub-res 404" in trail


def test_path_is_restored_after_the_sub_app() -> None:
    seen: list[str] = []
    sub = H3()
    sub.get("/x", lambda e: "x")
    parent = H3(on_response=lambda e, r: seen.append(e.path))
    parent.mount("/m", sub)
    TestClient(parent).get("/m/x")
    assert seen == ["/m/x"]


def test_parent_middleware_wraps_the_mount() -> None:
    parent, _, _ = make_parent()
    parent.use(lambda event, next: next().headers.set("x-parent", "1"))
    res = TestClient(parent).get("/api/items/1")
    assert res.headers["x-parent"] == "1" and res.headers["x-sub"] == "1"


def test_nested_mounts_and_dotdot_cannot_escape() -> None:
    inner = H3()
    inner.get("/leaf", lambda e: e.path)
    middle = H3()
    middle.mount("/inner", inner)
    outer = H3()
    outer.mount("/middle", middle)
    outer.get("/secret", lambda e: "outer secret")
    client = TestClient(outer)
    assert client.get("/middle/inner/leaf").text == "/leaf"
    # ".." is resolved on the whole path before any mount sees it.
    assert client.get("/middle/inner/../../secret").text == "outer secret"


@pytest.mark.parametrize("prefix", ["/", "", "//"])
def test_root_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="mount prefix must not be the root"):
        H3().mount(prefix, H3())


def test_mounting_something_else_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot mount 42: not an H3 app nor a WSGI callable"):
        H3().mount("/x", 42)  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["/users/:id", "/files/*", "/a/**", "/docs/**:rest"])
def test_dynamic_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="mount prefix must be static"):
        H3().mount(prefix, H3())
