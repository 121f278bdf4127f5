"""Reads many SSE streams from a process of its own, for the no-stall test.

``python tests/helpers/sse_stream_readers.py HOST PORT COUNT PATH``: opens COUNT streams, prints
``started`` once every stream has delivered an event, then on a ``stop`` line from stdin
prints the fewest events any one stream delivered since ``started``, and exits. Keeping
the readers out of the server's process leaves that process only the server's work.
"""

from gevent import monkey

monkey.patch_all()

import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.select  # noqa: E402


def main() -> None:
    host, port, count, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    counts = [0] * count
    socks: list[socket.socket] = []

    def read(index: int) -> None:
        sock = socket.create_connection((host, port), timeout=30)
        socks.append(sock)
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        last = b""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            counts[index] += (last + data).count(b"\n\n")
            last = data[-1:]

    readers = [gevent.spawn(read, i) for i in range(count)]
    with gevent.Timeout(30):
        while not all(counts):
            gevent.sleep(0.01)
    start = list(counts)
    print("started", flush=True)
    # Wait for the line without blocking the loop (stdin is not patched): the readers
    # must keep reading meanwhile.
    gevent.select.select([sys.stdin], [], [])
    sys.stdin.readline()
    print(min(now - then for now, then in zip(counts, start, strict=True)), flush=True)
    for sock in socks:
        sock.close()
    gevent.joinall(readers, timeout=5)


if __name__ == "__main__":
    main()
