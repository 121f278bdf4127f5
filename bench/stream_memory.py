"""Where an idle stream's memory goes: RSS and tracemalloc per stream, in one server process.

``python bench/stream_memory.py [STREAMS]`` serves idle ``Channel`` subscribers (the
benchmark's ``/stream``) in this process; a child process opens STREAMS connections and
holds them. This process reports RSS per stream, and tracemalloc's view of the same growth
grouped by source line, largest first (greenlet stacks are copied to the heap with
``PyMem_Malloc``, so tracemalloc sees them, charged to the line that switched away).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sse_h3green import make_app  # noqa: E402

from h3green import Server  # noqa: E402

CLIENT = r"""
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /stream?heartbeat=30 HTTP/1.1\r\nhost: x\r\n\r\n")
    socks.append(s)
for s in socks:
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
print("open", flush=True)
sys.stdin.readline()
"""


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0  # pragma: no cover


def open_streams(port: int, count: int, server: Server) -> subprocess.Popen[bytes]:
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(port), str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert client.stdout is not None
    client.stdout.readline()
    while len(server.connections) < count:
        gevent.sleep(0.01)
    gevent.sleep(0.5)
    gc.collect()
    return client


def close_streams(client: subprocess.Popen[bytes], server: Server) -> None:
    assert client.stdin is not None
    client.stdin.write(b"\n")
    client.stdin.flush()
    client.wait()
    while len(server.connections):
        gevent.sleep(0.01)
    gc.collect()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    server = Server(make_app(), port=0, access_log=False, max_connections=20000)
    server.start()
    port = server.address[1]
    # Warm up, so that first-use allocations are not counted.
    close_streams(open_streams(port, 10, server), server)
    # RSS without tracemalloc (its bookkeeping would count too).
    before_rss = rss_kib()
    client = open_streams(port, count, server)
    rss = (rss_kib() - before_rss) / count
    close_streams(client, server)
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    client = open_streams(port, count, server)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    close_streams(client, server)
    server.stop(timeout=2)
    stats = after.compare_to(before, "lineno")
    traced = sum(s.size_diff for s in stats)
    print(
        f"{count} idle streams: RSS {rss:.2f} KiB/stream, traced by tracemalloc {traced / count / 1024:.2f} KiB/stream"
    )
    for stat in stats[:16]:
        frame = stat.traceback[0]
        where = frame.filename.split("/site-packages/")[-1].split("/sse12/")[-1]
        print(
            f"  {stat.size_diff / count:8.1f} B  {stat.count_diff / count:5.2f} blocks  {where}:{frame.lineno}"
        )


if __name__ == "__main__":
    main()
