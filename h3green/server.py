"""The native server: ``Server``/``serve``, start, and graceful stop.

The layers under it, one module each: ``_listener`` accepts (connection cap, 503 past it,
registry of open connections); ``_connection`` runs one connection's request loop over an
``_h1`` driver; ``_respond`` writes responses; ``_stream`` runs an SSE stream; ``config``
holds every limit; ``_wire`` the small wire helpers.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, Unpack

import gevent
import gevent.event

from ._connection import Connection
from ._listener import ConnectionGreenlet, Listener, Registry, refuse
from ._patching import patching_problems
from ._stream import Stream
from .app import H3
from .config import Config, ConfigOptions, make_config

__all__ = ["Config", "ConfigOptions", "Connection", "Server", "serve"]

logger = logging.getLogger("h3green")


class Server:
    """An h3green server: ``Server(app, port=0).start()``, later ``.stop(timeout)``.

    Keyword options are the fields of ``Config`` (``ConfigOptions``), given one by one,
    as a ``config``, or both (the keywords replace the config's fields); an unknown one
    is a ``TypeError`` here. ``port=0`` picks a free port; read the real one from
    ``.address``. Pass ``listener`` (a bound, listening socket) to serve on a socket
    made elsewhere.
    """

    def __init__(
        self,
        app: H3,
        host: str = "127.0.0.1",
        port: int = 3000,
        *,
        listener: socket.socket | None = None,
        config: Config | None = None,
        **options: Unpack[ConfigOptions],
    ) -> None:
        if not isinstance(app, H3):
            raise TypeError(f"Server serves an H3 app, got {app!r}; mount WSGI apps with app.mount()")
        self.app = app
        self.config = make_config(config, options)
        self.connections = Registry()
        self._stopped = gevent.event.Event()
        self._server = Listener(
            listener if listener is not None else (host, port),
            self._handle,
            # A socket made elsewhere is already listening with its own backlog.
            backlog=None if listener is not None else self.config.backlog,
            spawn=ConnectionGreenlet.spawn,
        )

    def set_max_accept(self, count: int) -> None:
        """Accept at most *count* connections per wake-up of the listener.

        gunicorn's gevent worker accepts one at a time when there are several workers,
        so a busy worker leaves new connections to its idle siblings.
        """
        self._server.max_accept = count

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` the server listens on."""
        return self._server.address[:2]  # type: ignore[no-any-return]

    def start(self) -> None:
        """Start accepting in the background (returns at once)."""
        if problem := patching_problems():
            logger.warning(problem)
        self.app.freeze()
        self._server.start()
        address = self._server.address
        if isinstance(address, tuple):
            logger.info("h3green listening on http://%s:%d", *address[:2])
        else:  # a UNIX socket handed over by gunicorn
            logger.info("h3green listening on unix:%s", address)

    def serve_forever(self) -> None:
        """Start (unless started) and block until ``stop()`` completes."""
        if not self._server.started:
            self.start()
        self._stopped.wait()

    def _handle(self, sock: socket.socket, addr: Any) -> None:
        if len(self.connections) >= self.config.max_connections:
            refuse(sock, self.config, self.connections)
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not TCP (a UNIX socket)
            pass
        # The connection closes the socket (the listener does not: see Listener.do_close).
        Connection(sock, addr, self.app, self.config, self.connections).run()

    def stop(self, timeout: float | None = None) -> None:
        """Graceful shutdown: stop accepting, close idle connections, end streams with
        their final event, let requests in flight finish, and cut what remains after
        *timeout* seconds (``shutdown_timeout`` by default)."""
        if timeout is None:
            timeout = self.config.shutdown_timeout
        connections = self.connections
        connections.closing = True
        logger.info("h3green shutting down: %d open connection(s)", len(connections))
        self._server.close()
        deadline = time.monotonic() + timeout
        streams = idle = 0
        for conn in list(connections):
            if type(conn) is Stream:
                streams += 1
                conn.shutdown()  # never blocks: see Stream.shutdown
            elif type(conn) is Connection and conn.idle and conn.greenlet is not None:
                idle += 1
                conn.greenlet.kill(block=False)
        if idle:
            logger.info("h3green closed %d idle connection(s)", idle)
        if streams:
            logger.info("h3green sent the shutdown event to %d stream(s)", streams)
        if busy := len(connections) - idle - streams:
            logger.info("h3green waiting up to %.1f s for %d request(s) in flight", timeout, busy)
        if connections:
            connections.emptied.clear()  # set again by the discard that empties the set
            connections.emptied.wait(max(0.0, deadline - time.monotonic()))
        if connections:
            logger.warning(
                "h3green cutting %d connection(s) still open after %.1f s", len(connections), timeout
            )
            for conn in list(connections):
                if type(conn) is Stream:
                    conn.cut()
                elif conn.greenlet is not None:
                    conn.greenlet.kill(block=False)
            gevent.sleep(0)
        self._stopped.set()
        logger.info("h3green stopped")


def serve(
    app: H3,
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    config: Config | None = None,
    **options: Unpack[ConfigOptions],
) -> None:
    """Serve *app* until SIGINT or SIGTERM, then shut down gracefully (options as ``Server``)."""
    server = Server(app, host, port, config=config, **options)

    def on_signal() -> None:
        gevent.spawn(server.stop)

    # Signals are handled before the "listening" line: a signal sent on reading it stops
    # the server gracefully rather than killing the process.
    handlers: list[Callable[[], Any]] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        handlers.append(gevent.signal_handler(signum, on_signal))
    try:
        server.start()
        if not logger.hasHandlers():  # logging not configured: still say where to connect
            host, port = server.address
            print(f"h3green listening on http://{host}:{port}", file=sys.stderr)
        server.serve_forever()
    finally:
        for handler in handlers:
            handler.cancel()  # type: ignore[attr-defined]
