"""Soak: mixed traffic against one server, then memory and greenlets back at their baseline.

Five kinds of client run side by side for a while: keep-alive requests, pipelined bursts,
SSE streams that come and go, clients that vanish mid-request (half a head, half a body,
a reset) and clients that vanish mid-stream. Afterwards every connection must be released,
the greenlet count must be back at its baseline and resident memory within a small margin
of it. The short run (about 3 s) is part of the normal suite; the long one (60 s) is
``-m slow`` (skipped otherwise): ``python -m pytest tests/test_soak.py -m slow -q -s``, and
``H3GREEN_SOAK_SECONDS`` sets its length.
"""

from __future__ import annotations

import gc
import os
import re
import socket
import struct
import time
from collections import Counter

import gevent
import pytest
from helpers import RawClient, counter_app, live_greenlets, wait_until, warm_up

from h3green import H3, H3Event, Server

pytestmark = pytest.mark.live

GET = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"


def make_app() -> H3:
    """The ticking app (an event every 5 ms) with an echo route."""
    app = counter_app(interval=0.005, count=200)

    @app.post("/echo")
    def echo(event: H3Event) -> bytes:
        return event.read_body()

    return app


def rss_bytes() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def plain(address: tuple[str, int], done: Counter[str]) -> None:
    with RawClient(address) as client:
        for _ in range(20):
            client.send(GET % b"/ping")
            response = client.response()
            assert response is not None and response.body == b"pong"
            done["plain"] += 1


def pipelined(address: tuple[str, int], done: Counter[str]) -> None:
    with RawClient(address) as client:
        body = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        client.send((GET % b"/ping") * 5 + body * 5)
        for expected in [b"pong"] * 5 + [b"hello"] * 5:
            response = client.response()
            assert response is not None and response.body == expected
            done["pipelined"] += 1


def stream(address: tuple[str, int], done: Counter[str]) -> None:
    with RawClient(address) as client:
        client.send(GET % b"/events")
        head = client.response(head_only=True)
        assert head is not None and head.status == 200
        deadline = time.monotonic() + 3
        while client.buffer.count(b"data: ") < 5:
            assert client.fill(deadline)
        done["stream"] += 1


def vanish(address: tuple[str, int], done: Counter[str], kind: int) -> None:
    client = RawClient(address)
    if kind == 0:
        client.send(b"GET /ping HTTP/1.1\r\nHo")  # half a head
    elif kind == 1:
        client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhal")  # half a body
    else:
        client.send(GET % b"/events")  # mid-stream, then a reset rather than a FIN
        client.response(head_only=True)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gevent.sleep(0.01)
    client.close()
    done[f"vanish{kind}"] += 1


def soak(seconds: float) -> None:
    warm_up()
    server = Server(
        make_app(), port=0, access_log=False, header_timeout=0.5, body_timeout=0.5, keepalive_timeout=1.0
    )
    server.start()
    address = server.address
    done: Counter[str] = Counter()

    def round_() -> None:
        jobs = [gevent.spawn(plain, address, done) for _ in range(4)]
        jobs += [gevent.spawn(pipelined, address, done) for _ in range(2)]
        jobs += [gevent.spawn(stream, address, done) for _ in range(4)]
        jobs += [gevent.spawn(vanish, address, done, kind) for kind in range(3)]
        gevent.joinall(jobs, timeout=10, raise_error=True)
        assert all(job.dead for job in jobs)

    try:
        round_()  # warm caches and pools before the baseline
        wait_until(lambda: not server.connections, 5)
        greenlets, rss = live_greenlets(), rss_bytes()
        rounds = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            round_()
            rounds += 1
        wait_until(
            lambda: not server.connections, 5, what=lambda: f"{len(server.connections)} connections left"
        )
        wait_until(lambda: live_greenlets() <= greenlets, 5, what=lambda: live_greenlets() - greenlets)
        grown = rss_bytes() - rss
        print(f"soak {seconds:.0f} s: {rounds} rounds, {dict(done)}, RSS {grown / 1e6:+.1f} MB")
        assert grown < 8 * 1024 * 1024, f"RSS grew {grown / 1e6:.1f} MB over {rounds} rounds"
        assert done["plain"] == 80 * (rounds + 1) and done["stream"] == 4 * (rounds + 1)
    finally:
        server.stop(1.0)


def test_short_soak() -> None:
    soak(3.0)


@pytest.mark.slow
def test_long_soak(request: pytest.FixtureRequest) -> None:
    # A minute is too long for every run of the suite: only when slow tests are asked for.
    if not re.search(r"(?<!not )\bslow\b", request.config.getoption("markexpr") or ""):
        pytest.skip("the 60 s soak runs with -m slow")
    soak(float(os.environ.get("H3GREEN_SOAK_SECONDS", "60")))
