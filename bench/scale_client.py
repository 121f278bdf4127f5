"""One client process of ``bench/scale.py``: idle SSE streams from one source address.

    python bench/scale_client.py PORT SOURCE_ADDRESS PATH

It reads commands from stdin, one JSON object a line, and answers each with one JSON line
on stdout (``sse_client.Streams`` does the work):

* ``{"cmd": "grow", "count": N, "max_per_worker": M}``: open streams up to N, at most M
  on any one worker; answers ``{"open": n, "refused": r, "rebalanced": b, "workers": {pid: n}}``
  (the ``x-worker`` header of each stream's head; *r*: 503s from a worker at its
  connection limit, *b*: streams that landed on a worker already holding M of this
  client's, both opened again);
* ``{"cmd": "watch", "seconds": S, "late_after": L}``: read for S seconds; heartbeats seen,
  longest and 99th-percentile silence, streams silent for longer than L;
* ``{"cmd": "await", "worker": PID, "want": K, "timeout": T}``: read until every stream of
  that worker has seen K ``tick`` events; answers the monotonic time of the last one;
* ``{"cmd": "close"}``: close every stream and exit.

Each process stays under the per-process descriptor limit (20,000 here) and, bound to
its own ``127.0.0.x``, has that address's whole ephemeral port range to itself.
"""

from __future__ import annotations

import collections
import json
import sys
from typing import Any

from sse_client import Streams


def main(argv: list[str]) -> None:
    port, source, path = int(argv[0]), argv[1], argv[2]
    streams = Streams(port, path, source=source, retry_refused=True)
    for line in sys.stdin:
        command = json.loads(line)
        cmd = command["cmd"]
        answer: dict[str, Any]
        if cmd == "grow":
            streams.grow_to(command["count"], command.get("timeout", 300), command.get("max_per_worker"))
            answer = {
                "open": len(streams.open),
                "refused": streams.refused,
                "rebalanced": streams.rebalanced,
                "workers": dict(collections.Counter(streams.worker.values())),
            }
        elif cmd == "watch":
            answer = streams.watch(command["seconds"], command.get("late_after"))
        elif cmd == "await":
            answer = streams.await_ticks(command.get("worker"), command["want"], command.get("timeout", 60))
        elif cmd == "close":
            streams.close()
            print(json.dumps({"closed": True}), flush=True)
            return
        else:
            answer = {"error": f"unknown command {cmd!r}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
