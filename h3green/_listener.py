"""Accepting connections: gevent's ``StreamServer`` made patient, the registry, the 503.

Strategy: gevent accepts and spawns one greenlet per connection; this module adds what a
server needs around that: a quiet back-off when ``accept()`` runs out of descriptors,
the registry of open connections (what graceful shutdown walks and waits on), and the
quick 503 for connections past ``max_connections``.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, Final

import gevent
import gevent.event
from gevent.server import StreamServer

from ._wire import OVERLOADED, RECV_SIZE

if TYPE_CHECKING:
    from ._connection import Connection
    from ._stream import Stream
    from .config import Config

__all__ = ["ConnectionGreenlet", "Listener", "Registry", "refuse"]

logger = logging.getLogger("h3green")

# accept() failures that mean "out of descriptors or memory for now", not "broken listener".
_ACCEPT_EXHAUSTED: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ConnectionGreenlet(gevent.Greenlet):  # type: ignore[misc]
    # PERF: gevent records the 10 frames that spawned each greenlet, for its debug dumps
    # of the greenlet tree; for a connection that is always the accept loop. Skipping it
    # saves ~0.2 KiB per open connection (and stream) and 11 allocations per accept.
    spawning_stack_limit = 0


class Listener(StreamServer):  # type: ignore[misc]
    """gevent's ``StreamServer``, quiet and patient when ``accept()`` runs out of resources.

    gevent already backs off after a failed accept (``min_delay`` 0.01 s doubling up to
    ``max_delay`` 1 s) but prints a traceback for every failure. At EMFILE the pending
    connection stays in the backlog and the listener stays readable, so without a pause
    the loop would spin; we pause accepting the same way, log one line instead of a
    traceback, and resume on a timer (not a greenlet, so nothing outlives ``close()``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accept_delay = self.min_delay
        self._resume_timer: Any = None

    def do_read(self) -> Any:
        try:
            result = super().do_read()
        except OSError as exc:
            if exc.errno not in _ACCEPT_EXHAUSTED:
                raise
            delay = self.accept_delay
            logger.warning("h3green cannot accept connections (%s); retrying in %.2f s", exc.strerror, delay)
            self.stop_accepting()
            timer = self._resume_timer = self.loop.timer(delay, ref=False)
            timer.start(self._resume)
            self.accept_delay = min(self.max_delay, delay * 2)
            return None
        if result is not None:
            self.accept_delay = self.min_delay
        return result

    def _resume(self) -> None:
        self._resume_timer = None
        if self.started:
            self.start_accepting()

    def do_close(self, sock: Any, *args: Any) -> None:
        # gevent closes a connection's socket when its handler returns; h3green's
        # connection closes it itself, and an SSE stream keeps it after the handler.
        pass

    def close(self) -> None:
        if self._resume_timer is not None:
            self._resume_timer.stop()
            self._resume_timer = None
        super().close()


class Registry(set["Connection | Stream"]):
    """The open connections of one server (a running SSE stream stands for its
    connection), and whether it is shutting down."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        self.emptied = gevent.event.Event()
        #: Connections being refused right now (each gets a 503).
        self.refusing = 0

    def discard(self, conn: object) -> None:
        super().discard(conn)
        if not self:
            self.emptied.set()


def refuse(sock: socket.socket, config: Config, registry: Registry) -> None:
    """Past ``max_connections``: a quick 503 rather than a wait in the backlog."""
    if registry.refusing >= config.max_connections:
        sock.close()
        return
    registry.refusing += 1
    try:
        sock.settimeout(config.linger_timeout)
        sock.sendall(OVERLOADED)
        sock.shutdown(socket.SHUT_WR)
        # Read what the client sent, so closing does not reset the connection and
        # destroy the 503 before the client reads it; bounded in time and bytes so a
        # refused client cannot hold on.
        deadline = time.monotonic() + config.linger_timeout
        drained = 0
        while drained <= RECV_SIZE and (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            data = sock.recv(RECV_SIZE)
            if not data:
                break
            drained += len(data)
    except OSError:
        pass
    finally:
        registry.refusing -= 1
        sock.close()
