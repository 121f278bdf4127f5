"""examples/chat.py with ``REDIS_URL``: two server processes, one room, one online list."""

from __future__ import annotations

import json
from collections.abc import Iterator

import gevent
import pytest
from helpers import REPO, RawClient, start_cli
from redis_helpers import RedisServer

from h3green.testing import ServerSentEvent

pytestmark = pytest.mark.live


def post(port: int, username: str, message: str) -> str:
    client = RawClient(("127.0.0.1", port))
    try:
        body = json.dumps({"username": username, "message": message}).encode()
        status, _, answer = client.fetch("POST", "/chat/send", body, [("content-type", "application/json")])
    finally:
        client.close()
    assert status == 200, answer
    return str(json.loads(answer)["id"])


def join(port: int, username: str) -> tuple[RawClient, Iterator[ServerSentEvent], list[str]]:
    client = RawClient(("127.0.0.1", port))
    assert client.open("GET", f"/chat/stream?username={username}").status_code == 200
    events = client.events()
    welcome = next(events)
    assert welcome.event == "system"
    return client, events, json.loads(welcome.data)["online"]


def synced(port: int, events: Iterator[ServerSentEvent]) -> None:
    """Post until the stream shows a message: it is subscribed from then on."""
    reader = gevent.spawn(lambda: next(e for e in events if e.event == "message"))
    while not reader.ready():
        post(port, "sync", "sync")
        reader.join(0.05)


def test_chat_across_two_processes(redis_server: RedisServer) -> None:
    env = {"REDIS_URL": redis_server.url, "PYTHONPATH": str(REPO)}
    one, port1 = start_cli("examples.chat:app", env=env, cwd=str(REPO))
    two, port2 = start_cli("examples.chat:app", env=env, cwd=str(REPO))
    clients = []
    try:
        ada, ada_events, online = join(port1, "ada")
        clients.append(ada)
        assert online == ["ada"]
        synced(port2, ada_events)
        bob, bob_events, online = join(port2, "bob")
        clients.append(bob)
        assert online == ["ada", "bob"]  # across processes
        joined = next(e for e in ada_events if e.event == "user-event")
        assert json.loads(joined.data) == {"type": "join", "username": "bob"}
        synced(port1, bob_events)
        sent = post(port2, "ada", "hi from the other process")
        for events in (ada_events, bob_events):
            message = next(e for e in events if e.event == "message" and "sync" not in e.data)
            assert message.id == sent and json.loads(message.data)["message"] == "hi from the other process"
        bob.close()
        left = next(e for e in ada_events if e.event == "user-event")
        assert json.loads(left.data) == {"type": "leave", "username": "bob"}
        carol, _, online = join(port1, "carol")
        clients.append(carol)
        assert online == ["ada", "carol"]
    finally:
        for client in clients:
            client.close()
        for proc in (one, two):
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
