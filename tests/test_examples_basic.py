"""examples/hello.py and examples/rest_api.py: in-process through TestClient, and as real
processes (``python examples/x.py`` and ``python -m h3green examples.x:app``) over a socket."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import accepts, free_port, wait_until

from h3green.testing import TestClient

ROOT = Path(__file__).resolve().parent.parent


def load_example(name: str) -> types.ModuleType:
    """Import examples/<name>.py by path, whatever the current directory is."""
    spec = importlib.util.spec_from_file_location(f"examples.{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hello = load_example("hello")
rest_api = load_example("rest_api")
STARTUP_DEADLINE = 20.0


# -- in process ----------------------------------------------------------------------------


def test_hello() -> None:
    client = TestClient(hello.app)
    assert client.get("/").text == "Hello from h3green!"
    assert client.get("/hello/ada").json() == {"hello": "ada"}
    assert client.get("/nope").status == 404


@pytest.fixture
def api() -> TestClient:
    return TestClient(rest_api.create_app())


def test_crud_flow(api: TestClient) -> None:
    assert api.get("/items").json() == {"items": [], "count": 0}

    res = api.post("/items", json={"name": "apple", "quantity": 3})
    assert res.status == 201
    assert res.headers["location"] == "/items/1"
    assert res.json() == {"id": 1, "name": "apple", "quantity": 3}
    assert api.post("/items", json={"name": "pear"}).json() == {"id": 2, "name": "pear", "quantity": 0}

    assert api.get("/items/1").json()["name"] == "apple"
    listing = api.get("/items").json()
    assert listing["count"] == 2 and [i["id"] for i in listing["items"]] == [1, 2]
    assert api.get("/items", params={"name": "PE"}).json()["items"] == [
        {"id": 2, "name": "pear", "quantity": 0}
    ]

    res = api.put("/items/1", json={"name": "green apple"})
    assert res.json() == {"id": 1, "name": "green apple", "quantity": 0}
    res = api.patch("/items/1", json={"quantity": 7})
    assert res.json() == {"id": 1, "name": "green apple", "quantity": 7}

    res = api.delete("/items/1")
    assert (res.status, res.body) == (204, b"")
    assert api.get("/items/1").status == 404
    assert api.get("/").json()["count"] == 1


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"name": "is required"}),
        ({"name": ""}, {"name": "must be a non-empty string"}),
        ({"name": "x" * 101}, {"name": "must be at most 100 characters"}),
        ({"name": "a", "quantity": -1}, {"quantity": "must be a non-negative integer"}),
        ({"name": "a", "quantity": True}, {"quantity": "must be a non-negative integer"}),
        ({"name": 5, "colour": "red"}, {"colour": "unknown field", "name": "must be a non-empty string"}),
        ([1, 2], {"body": "must be an object"}),
    ],
)
def test_validation_errors_are_400_with_data(api: TestClient, body: Any, errors: dict[str, str]) -> None:
    res = api.post("/items", json=body)
    assert res.status == 400
    payload = res.json()
    assert payload["status"] == 400 and payload["statusText"] == "Bad Request"
    assert payload["data"] == {"errors": errors}
    assert api.get("/items").json()["count"] == 0


def test_bad_json_is_400(api: TestClient) -> None:
    res = api.post("/items", data=b"{oops", headers={"content-type": "application/json"})
    assert res.status == 400
    assert "invalid JSON" in res.json()["message"]


def test_partial_update_validates(api: TestClient) -> None:
    api.post("/items", json={"name": "a"})
    res = api.patch("/items/1", json={"quantity": "many"})
    assert res.status == 400
    assert api.get("/items/1").json()["quantity"] == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_unknown_and_bad_ids(api: TestClient, method: str) -> None:
    res = api.request(method, "/items/99", json={"name": "x"})
    assert (res.status, res.json()["message"]) == (404, "item 99 not found")
    res = api.request(method, "/items/abc", json={"name": "x"})
    assert res.status == 400
    assert res.json()["data"] == {"id": "abc"}


def test_wrong_methods_are_405(api: TestClient) -> None:
    res = api.delete("/items")
    assert (res.status, res.headers["allow"]) == (405, "GET, HEAD, OPTIONS, POST")
    res = api.post("/items/1")
    assert res.status == 405
    assert res.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"


# -- as real processes ---------------------------------------------------------------------


@pytest.fixture
def run_example() -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> int:
        port = free_port()
        env = {**os.environ, "PORT": str(port), "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, *args]
        if args[0] == "-m":
            argv += ["--port", str(port)]
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(proc)
        wait_until(
            lambda: proc.poll() is not None or accepts(port), STARTUP_DEADLINE, f"{args} to listen on {port}"
        )
        if proc.poll() is not None:
            output = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"{' '.join(args)} did not start listening on {port}:\n{output}")
        return port

    start.procs = procs  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if shutdown hangs
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
    for proc in procs:
        assert proc.returncode is not None


def call(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    payload = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"} if payload else {}
    conn.request(method, path, body=payload, headers=headers)
    res = conn.getresponse()
    data = res.read()
    return res.status, json.loads(data) if data else None


def drive_crud(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:  # one keep-alive connection for the whole flow
        assert call(conn, "POST", "/items", {"name": "curl-able"}) == (
            201,
            {"id": 1, "name": "curl-able", "quantity": 0},
        )
        assert call(conn, "GET", "/items/1")[1]["name"] == "curl-able"
        assert call(conn, "POST", "/items", {"quantity": 1})[0] == 400
        assert call(conn, "PATCH", "/items/1", {"quantity": 2})[1]["quantity"] == 2
        assert call(conn, "DELETE", "/items")[0] == 405
        assert call(conn, "DELETE", "/items/1") == (204, None)
        assert call(conn, "GET", "/items/1")[0] == 404
    finally:
        conn.close()


def test_rest_api_as_a_script(run_example: Any) -> None:
    drive_crud(run_example("examples/rest_api.py"))


def test_rest_api_through_the_cli(run_example: Any) -> None:
    drive_crud(run_example("-m", "h3green", "examples.rest_api:app"))


@pytest.mark.parametrize("args", [("examples/hello.py",), ("-m", "h3green", "examples.hello:app")])
def test_hello_as_a_process(run_example: Any, args: tuple[str, ...]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", run_example(*args), timeout=10)
    try:
        conn.request("GET", "/hello/world")
        res = conn.getresponse()
        assert (res.status, json.loads(res.read())) == (200, {"hello": "world"})
    finally:
        conn.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_script_stops_cleanly_on_signals(run_example: Any, signum: int) -> None:
    port = run_example("examples/rest_api.py")
    proc = run_example.procs[-1]
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, output.decode()
    assert b"Traceback" not in output
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
