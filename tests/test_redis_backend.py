"""``h3green.redis.RedisBackend`` against a real ``redis-server``: what only Redis has.

Keys and payloads, settings refused at setup, publishing from a plain script, URLs with
passwords and unix sockets, Redis unreachable at start, and ``redis-server`` killed and
restarted under open streams (tests/redis_helpers.py starts and kills it).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gevent
import pytest
import redis
import redis.connection
from helpers import REPO, free_port, wait_until
from redis_helpers import RedisServer, blocks
from test_channel import Transport, channel_app, listening, writer_for

from h3green import H3, Channel, ChannelUnavailable, H3Event
from h3green.redis import RedisBackend, parse_id, redis_is_cooperative
from h3green.testing import TestClient

pytestmark = pytest.mark.live


def received(transport: Transport) -> list[dict[str, str]]:
    return blocks(b"".join(transport.sent))


def wait_for(transport: Transport, count: int, timeout: float = 5) -> list[dict[str, str]]:
    wait_until(lambda: len(received(transport)) >= count, timeout, f"{count} events")
    return received(transport)


def test_keys_are_prefixed_and_entries_hold_the_encoded_event(
    redis_server: RedisServer, cooperative_redis: None
) -> None:
    with RedisBackend(redis_server.url) as one, RedisBackend(redis_server.url, prefix="app2:") as two:
        first = Channel("chat", backend=one).publish({"text": "hi"}, event="message")
        Channel("chat", backend=two).publish("other app")
        Channel("chat", backend=one).publish("presence", store=False)
        raw = redis.Redis.from_url(redis_server.url)
        try:
            assert sorted(raw.keys("*")) == [b"app2:chat", b"h3green:chat"]
            entries: Any = raw.xrange("h3green:chat")
            assert first is not None
            assert entries[0] == (first.encode(), {b"d": b'event: message\ndata: {"text":"hi"}\n\n'})
            assert entries[1][1] == {b"d": b"data: presence\n\n", b"l": b"1"}
        finally:
            raw.close()
        assert parse_id(first) is not None and "prefix='h3green:'" in repr(one)


def test_settings_and_misuse_are_refused_at_setup(redis_server: RedisServer, cooperative_redis: None) -> None:
    with RedisBackend(redis_server.url, max_event_bytes=100) as backend:
        with pytest.raises(ValueError, match="needs a name"):
            Channel(backend=backend)
        with pytest.raises(ValueError):
            Channel("a/b", backend=backend)
        with pytest.raises(ValueError, match="history"):
            Channel("x", backend=backend, history=0)
        with pytest.raises(ValueError, match="auto_id"):
            Channel("x", backend=backend, auto_id=False)
        from h3green.channel import MemoryHistory

        with pytest.raises(ValueError, match="store="):
            Channel("x", backend=backend, store=MemoryHistory())
        channel = Channel("x", backend=backend)
        with pytest.raises(ValueError, match="id="):
            channel.publish("a", id="7")
        with pytest.raises(ValueError, match="max_event_bytes"):
            channel.publish("a" * 200)
        with pytest.raises(ValueError):
            channel.publish("a", event="a\nb")
        assert channel.publish("small")
    for bad in (
        {"timeout": 0},
        {"block": 0},
        {"max_event_bytes": 0},
        {"reconnect_min": 2, "reconnect_max": 1},
        {"coalesce": -1},
    ):
        with pytest.raises(ValueError):
            RedisBackend(redis_server.url, **bad)  # type: ignore[arg-type]


PUBLISHER = """
import sys
from h3green import Channel
from h3green.redis import RedisBackend

with RedisBackend(sys.argv[1]) as backend:
    news = Channel("news", backend=backend)
    for text in sys.argv[2:]:
        print(news.publish({"text": text}, event="news"))
"""


def test_a_plain_script_publishes_to_listeners_in_this_process(
    redis_backend: RedisBackend, redis_server: RedisServer, tmp_path: Path
) -> None:
    channel = Channel("news", backend=redis_backend)
    writer, transport = writer_for()
    greenlet = listening(channel, writer)
    wait_until(lambda: len(channel) == 1 and redis_backend.connected, 5, "the subscriber")
    script = tmp_path / "publish.py"
    script.write_text(PUBLISHER)
    done = subprocess.run(
        [sys.executable, str(script), redis_server.url, "one", "two"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=30,
        check=True,
    )
    ids = done.stdout.decode().split()
    assert wait_for(transport, 2) == [
        {"event": "news", "id": ids[0], "data": '{"text":"one"}'},
        {"event": "news", "id": ids[1], "data": '{"text":"two"}'},
    ]
    writer.close()
    greenlet.join(5)


def test_password_and_unix_socket_urls(tmp_path: Path, cooperative_redis: None) -> None:
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(tmp_path, "--requirepass", "s3cret", "--unixsocket", str(socket_path)).start()
    try:
        for url in (
            f"redis://:s3cret@127.0.0.1:{server.port}/0",
            f"unix://{socket_path}?password=s3cret",
        ):
            with RedisBackend(url) as backend:
                channel = Channel("room", backend=backend)
                writer, transport = writer_for()
                greenlet = listening(channel, writer)
                wait_until(lambda ch=channel: len(ch) == 1, 5, "the subscriber")  # type: ignore[misc]
                event_id = channel.publish("hello")
                assert wait_for(transport, 1) == [{"id": event_id, "data": "hello"}]
                writer.close()
                greenlet.join(5)
                assert "s3cret" not in repr(backend)
        with RedisBackend(f"redis://:wrong@127.0.0.1:{server.port}/0") as backend:
            with pytest.raises(ChannelUnavailable):
                Channel("room", backend=backend).publish("x")
    finally:
        server.kill()


def test_a_new_channel_wakes_a_reader_blocked_on_others(
    redis_server: RedisServer, cooperative_redis: None
) -> None:
    # The block timeout is far beyond the wait below: only CLIENT UNBLOCK can make it.
    with RedisBackend(redis_server.url, block=60) as backend:
        first, second = Channel("first", backend=backend), Channel("second", backend=backend)
        writer1, transport1 = writer_for()
        greenlets = [listening(first, writer1)]
        wait_until(lambda: len(first) == 1, 5, "the first subscriber")
        first.publish("a")
        wait_for(transport1, 1)
        writer2, transport2 = writer_for()
        greenlets.append(listening(second, writer2))
        wait_until(lambda: len(second) == 1, 5, "the second subscriber")
        event_id = second.publish("b")
        assert wait_for(transport2, 1, timeout=5) == [{"id": event_id, "data": "b"}]
        for writer in (writer1, writer2):
            writer.close()
        gevent.joinall(greenlets, timeout=5)
        wait_until(lambda: "keys=0" in repr(backend), 5, "the keys to be released")


def test_redis_unreachable_at_start(
    tmp_path: Path, cooperative_redis: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="h3green")
    port = free_port()
    with RedisBackend(
        f"redis://127.0.0.1:{port}/0", timeout=0.5, reconnect_min=0.01, reconnect_max=0.05
    ) as backend:
        channel = Channel("room", backend=backend)
        app = channel_app(channel)
        app.get("/", lambda e: "plain route")

        @app.post("/say")
        def say(event: H3Event) -> dict[str, Any]:
            return {"id": channel.publish(event.read_json())}

        client = TestClient(app, sse_heartbeat=0.05)
        assert client.get("/").text == "plain route"
        with gevent.Timeout(10):  # bounded: the timeout is 0.5 s
            with pytest.raises(ChannelUnavailable, match="did not take the event"):
                channel.publish("lost")
            response = client.post("/say", json="hi")
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json()["status"] == 503
        with client.stream("GET", "/live", headers={"last-event-id": "1-0"}) as stream:
            pieces = stream.iter_bytes()
            assert next(pieces).startswith(b":")  # a heartbeat: the stream stays open
            wait_until(lambda: any("unreachable" in r.message for r in caplog.records), 5, "the warning")
            gevent.sleep(0.2)  # several reconnect attempts
            server = RedisServer(tmp_path)
            server.port = port
            server.start()
            try:
                wait_until(lambda: backend.connected, 5, "the reader to connect")
                event_id = channel.publish("hello")
                body = b""
                while b"hello" not in body:
                    body += next(pieces)
                events = blocks(body)
                assert events[-1] == {"id": event_id, "data": "hello"}
                assert events[0]["event"] == "gap"  # "1-0" is not known to this Redis
            finally:
                server.kill()
    states = [r.message for r in caplog.records if "Redis at" in r.message]
    assert len(states) == 2 and "unreachable" in states[0] and "connected" in states[1]


def test_redis_killed_and_restarted_mid_stream(
    redis_server: RedisServer, cooperative_redis: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="h3green")
    with RedisBackend(redis_server.url, timeout=0.5, reconnect_min=0.01, reconnect_max=0.1) as backend:
        channel = Channel("room", backend=backend)
        writer, transport = writer_for()
        greenlet = listening(channel, writer)
        wait_until(lambda: len(channel) == 1, 5, "the subscriber")
        before = [channel.publish(f"m{n}") for n in range(3)]
        wait_for(transport, 3)
        redis_server.kill()
        with pytest.raises(ChannelUnavailable):
            channel.publish("while down")
        wait_until(lambda: not backend.connected, 5, "the reader to notice")
        redis_server.start()  # no persistence: the stream is gone
        wait_until(lambda: backend.connected, 5, "the reader to reconnect")
        after = [channel.publish(f"m{n}") for n in range(3, 5)]
        got = wait_for(transport, 6)
        assert writer.is_active
        assert got[:3] == [{"id": before[n], "data": f"m{n}"} for n in range(3)]
        assert got[3] == {"event": "gap", "data": '{"reason":"lost"}'}
        assert got[4:] == [{"id": after[n - 3], "data": f"m{n}"} for n in range(3, 5)]
        # Ids never went backwards for this client.
        assert parse_id(after[0]) > parse_id(before[-1])  # type: ignore[operator, arg-type]
        # A client that comes back from before the restart: a gap, then what Redis holds.
        resumed, resumed_transport = writer_for(last_event_id=before[1])
        other = listening(channel, resumed)
        assert wait_for(resumed_transport, 3) == [
            {"event": "gap", "data": '{"reason":"expired"}'},
            *({"id": after[n - 3], "data": f"m{n}"} for n in range(3, 5)),
        ]
        for w in (writer, resumed):
            w.close()
        gevent.joinall([greenlet, other], timeout=5)
    states = [r.message for r in caplog.records if "Redis at" in r.message]
    assert [("unreachable" in s, "connected" in s) for s in states] == [
        (False, True),
        (True, False),
        (False, True),
    ]


def test_reader_warns_about_blocking_sockets(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    monkeypatch.setattr(redis.connection, "socket", socket)
    assert not redis_is_cooperative()
    with RedisBackend(redis_server.url) as backend:
        backend._start_reader()  # no key yet: it waits without touching Redis
        gevent.sleep(0)
    assert "blocking sockets" in caplog.text


def test_an_unhandled_publish_failure_is_a_503(cooperative_redis: None) -> None:
    app = H3()
    with RedisBackend(f"redis://127.0.0.1:{free_port()}/0", timeout=0.3) as backend:
        channel = Channel("room", backend=backend)
        app.post("/say", lambda e: {"id": channel.publish("x")})
        response = TestClient(app).post("/say")
    assert response.status_code == 503
    assert "did not take the event" in response.json()["message"]


def test_tls_urls_and_options_are_passed_through(cooperative_redis: None) -> None:
    port = free_port()
    with RedisBackend(f"rediss://:pw@127.0.0.1:{port}/2", timeout=0.3, ssl_cert_reqs="none") as backend:
        for client in (backend.redis, backend._reader):
            pool = client.connection_pool
            assert pool.connection_class is redis.SSLConnection
            assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["ssl_cert_reqs"] == "none"
        assert backend._reader.connection_pool.connection_kwargs["socket_timeout"] is None
        assert backend.url == f"rediss://:***@127.0.0.1:{port}/2"
        with pytest.raises(ChannelUnavailable):
            Channel("room", backend=backend).publish("x")
