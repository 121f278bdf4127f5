"""Channels across processes: three ``H3Worker`` workers under one gunicorn, one Redis.

The workers share one listening socket, so which worker a connection reaches is the
kernel's choice: every stream starts with a ``hello`` event naming its worker's pid, and
the test opens connections until every worker serves some of them (and, for the
reconnect, until one reaches a worker other than before).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
import test_gunicorn
from helpers import REPO, RawClient
from redis_helpers import RedisServer
from test_gunicorn import CLIENT_TIMEOUT, H3WORKER, StartGunicorn

from h3green.testing import ServerSentEvent

pytestmark = pytest.mark.live

#: test_gunicorn's fixture: gunicorn in its own process group, killed at the end.
gunicorn = test_gunicorn.gunicorn

FANOUT_APP = """
import os

from h3green import H3
from h3green.redis import RedisBackend
from h3green.sse import Channel

app = H3()
backend = RedisBackend(os.environ["REDIS_URL"])
channel = Channel("fanout", backend=backend, history=1000)


@app.get("/stream")
def stream(event):
    event.start_sse()

    def run(writer):
        writer.send_event(str(os.getpid()), event="hello")
        channel.listen(writer)

    event.set_stream_callback(run)


@app.post("/publish")
def publish(event):
    return {"pid": os.getpid(), "id": channel.publish(event.read_text(), event="message")}


@app.get("/ping")
def ping(event):
    return "pong"
"""

PUBLISHER = """
import sys
from h3green.redis import RedisBackend
from h3green.sse import Channel

with RedisBackend(sys.argv[1]) as backend:
    channel = Channel("fanout", backend=backend, history=1000)
    for text in sys.argv[2:]:
        print(channel.publish(text, event="message"))
"""

WORKERS = 3
CLIENTS = 60


class Stream:
    def __init__(self, address: tuple[str, int], last_event_id: str | None = None) -> None:
        self.client = RawClient(address, timeout=CLIENT_TIMEOUT)
        try:
            headers = [("last-event-id", last_event_id)] if last_event_id else []
            assert self.client.open("GET", "/stream", headers=headers).status_code == 200
            self.events: Iterator[ServerSentEvent] = self.client.events()
            hello = next(self.events)
            assert hello.event == "hello"
        except BaseException:
            self.client.close()
            raise
        self.pid = hello.data

    def until(self, data: str) -> list[tuple[str | None, str]]:
        got = []
        for event in self.events:
            got.append((event.id, event.data))
            if event.data == data:
                return got
        raise AssertionError(f"the stream ended before {data!r}")  # pragma: no cover


def fetch(address: tuple[str, int], method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    client = RawClient(address, timeout=CLIENT_TIMEOUT)
    try:
        status, _, answer = client.fetch(method, target, body)
    finally:
        client.close()
    return status, answer


@pytest.fixture
def opened() -> Iterator[list[Stream]]:
    """The test's streams, closed at the end whatever happened."""
    streams: list[Stream] = []
    yield streams
    for stream in streams:
        stream.client.close()


def publish(address: tuple[str, int], text: str) -> tuple[str, str]:
    status, body = fetch(address, "POST", "/publish", text.encode())
    assert status == 200, body
    answer = json.loads(body)
    return str(answer["pid"]), answer["id"]


def test_events_reach_every_client_of_every_worker(
    gunicorn: StartGunicorn,
    redis_server: RedisServer,
    tmp_path: Path,
    opened: list[Stream],
) -> None:
    (tmp_path / "fanout_app.py").write_text(FANOUT_APP)
    server = gunicorn("fanout_app:app", H3WORKER, "-w", str(WORKERS), env={"REDIS_URL": redis_server.url})
    server.wait_for(r"h3green listening on", count=WORKERS)  # every worker accepts
    address = server.address
    streams = opened
    for _ in range(300):  # the kernel picks the worker: open until each has some
        streams.append(Stream(address))
        if len(streams) >= CLIENTS and len({s.pid for s in streams}) == WORKERS:
            break
    workers = {s.pid for s in streams}
    assert len(workers) == WORKERS, f"{len(streams)} connections reached only {len(workers)} workers"

    # Every stream is subscribed once it has seen an event published after it opened.
    warm = gevent.spawn(lambda: [s.until("sync") for s in streams])
    while not warm.ready():
        publish(address, "sync")
        warm.join(0.05)
    warm.get()
    publish(address, "start")
    published = []
    by_worker: dict[str, int] = {}
    for n in range(200):  # publish through every worker
        pid, event_id = publish(address, f"w{n}")
        published.append((event_id, f"w{n}"))
        by_worker[pid] = by_worker.get(pid, 0) + 1
        if n >= 9 and len(by_worker) == WORKERS:
            break
    assert len(by_worker) == WORKERS
    script = tmp_path / "publish.py"
    script.write_text(PUBLISHER)
    done = subprocess.run(
        [sys.executable, str(script), redis_server.url, "s0", "s1", "s2", "end"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=30,
        check=True,
    )
    ids = done.stdout.decode().split()
    published += list(zip(ids, ["s0", "s1", "s2", "end"], strict=True))
    assert [i for i, _ in published] == sorted(
        {i for i, _ in published}, key=lambda i: tuple(map(int, i.split("-")))
    )

    readers = [gevent.spawn(s.until, "end") for s in streams]
    gevent.joinall(readers, timeout=30, raise_error=True)
    for reader in readers:
        got = reader.get()
        start = got.index(next(e for e in got if e[1] == "start"))
        assert got[start + 1 :] == published

    # One client leaves, misses 20 events, and comes back to another worker.
    leaving = streams.pop()
    leaving.client.close()
    last_seen = published[-1][0]
    missed = [publish(address, f"missed{n}")[1] for n in range(20)]
    back = None
    for _ in range(100):
        candidate = Stream(address, last_event_id=last_seen)
        opened.append(candidate)
        if candidate.pid != leaving.pid:
            back = candidate
            break
        candidate.client.close()
    assert back is not None, "no connection reached another worker"
    live = publish(address, "live")[1]
    got = back.until("live")
    assert got == [*((i, f"missed{n}") for n, i in enumerate(missed)), (live, "live")]


def test_redis_killed_and_restarted_under_open_streams(
    gunicorn: StartGunicorn,
    redis_server: RedisServer,
    tmp_path: Path,
    opened: list[Stream],
) -> None:
    (tmp_path / "fanout_app.py").write_text(FANOUT_APP)
    server = gunicorn("fanout_app:app", H3WORKER, "-w", "2", env={"REDIS_URL": redis_server.url})
    server.wait_for(r"h3green listening on", count=2)
    address = server.address
    streams = opened
    for _ in range(100):
        streams.append(Stream(address))
        if len(streams) >= 10 and len({s.pid for s in streams}) == 2:
            break
    assert len({s.pid for s in streams}) == 2
    warm = gevent.spawn(lambda: [s.until("sync") for s in streams])
    while not warm.ready():
        publish(address, "sync")
        warm.join(0.05)
    warm.get()
    _, before = publish(address, "before")
    # Every reader has it (an event Redis loses before a reader read it is a gap, not this).
    readers = [gevent.spawn(s.until, "before") for s in streams]
    gevent.joinall(readers, timeout=30, raise_error=True)

    redis_server.kill()
    # Plain routes are unaffected; publishing fails fast with a 503.
    assert fetch(address, "GET", "/ping") == (200, b"pong")
    status, body = fetch(address, "POST", "/publish", b"lost")
    assert status == 503 and b"did not take the event" in body
    redis_server.start()  # without persistence: the stream is gone
    while (answer := fetch(address, "POST", "/publish", b"after"))[0] != 200:
        gevent.sleep(0.05)
    after = json.loads(answer[1])["id"]

    def rest(stream: Stream) -> list[tuple[str, str | None, str]]:
        got = []
        for event in stream.events:
            if event.data != "sync":  # the last warm-up events may still be on their way
                got.append((event.event, event.id, event.data))
            if event.data == "after":
                return got
        raise AssertionError("the stream ended")  # pragma: no cover

    readers = [gevent.spawn(rest, s) for s in streams]
    gevent.joinall(readers, timeout=30, raise_error=True)
    for reader in readers:
        # The same streams, still open: one gap notice, then "after"; nothing twice.
        assert reader.get() == [
            ("gap", before, '{"reason":"lost"}'),
            ("message", after, "after"),
        ]
    assert tuple(map(int, after.split("-"))) > tuple(map(int, before.split("-")))
    assert server.log.count("unreachable") == 2, server.log  # one line per worker, not per attempt
