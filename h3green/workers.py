"""``H3Worker``: a gunicorn worker that serves an ``H3`` app with h3green's own server.

``gunicorn -k h3green.workers.H3Worker module:app`` -- gunicorn keeps what it is good at
(binding, forking, supervising, reloading, signals), and each worker runs
``h3green.server.Server`` on the listening sockets gunicorn hands it, instead of gunicorn's
parser or ``gevent.pywsgi``. Requests, streams, limits and graceful shutdown behave
exactly as under ``python -m h3green``.

Strategy: ``GeventWorker`` already monkey-patches and re-initialises the hub after the
fork; ``run()`` is replaced by one that starts a ``Server`` per listening socket, then
loops on two clocks: gunicorn's heartbeat (``notify()`` well inside ``timeout``) and a
short poll of ``alive`` (SIGTERM, ``max_requests`` and ``--reload`` clear it), so a stop
starts within 0.1 s instead of at the next heartbeat. Shutdown is ``Server.stop``: every
open stream gets its final event and closes, requests in flight finish, and the worker
exits as soon as the last connection is gone -- not when ``graceful_timeout`` runs out.

Settings, gunicorn to h3green (``Config`` fields):

==============================  ==========================================================
gunicorn                        h3green
==============================  ==========================================================
``bind``                        one ``Server`` per listening socket gunicorn created
``worker_connections``          ``max_connections`` (per socket; an open stream counts)
``keepalive``                   ``keepalive_timeout``
``graceful_timeout``            ``shutdown_timeout``
``limit_request_line``          ``max_request_line`` (0, unlimited in gunicorn: 64 KiB)
``limit_request_fields``        ``max_header_count``
``limit_request_field_size``    raises ``max_header_bytes`` (the whole head) if larger
``accesslog``                   access lines go to gunicorn's access log, formatted with
                                ``access_log_format`` (atoms h l u t r s m U q H b B p;
                                others print "-"); without ``accesslog``, none are made
``max_requests``                counted in an ``on_response`` hook; the worker restarts
``timeout``                     ``notify()`` every ``min(1, timeout / 4)`` seconds
``forwarded_allow_ips``         ``forwarded_allow_ips`` (gunicorn's default trusts
                                127.0.0.1 and ::1, and so does the worker)
==============================  ==========================================================

Every other ``Config`` field comes from an environment variable ``H3GREEN_<FIELD>``
(``H3GREEN_MAX_BODY_SIZE=10485760``, ``H3GREEN_SSE_HEARTBEAT=5``), which gunicorn's
``--env``/``raw_env`` sets for its workers; an environment variable also overrides a
mapped setting.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any, Final

import gevent
from gunicorn.workers.ggevent import GeventWorker  # type: ignore[import-untyped]

from . import wsgi_mount
from .app import H3
from .config import Config, parse_field
from .event import H3Event
from .response import Response
from .server import Server
from .wsgi_adapter import WSGIAdapter

__all__ = ["H3Worker", "config_from_gunicorn"]

_ENV_PREFIX: Final = "H3GREEN_"
_UNLIMITED_REQUEST_LINE: Final = 65536
_POLL: Final = 0.1
_BOOT_ERROR: Final = 3  # gunicorn's WORKER_BOOT_ERROR: the arbiter stops instead of respawning


def config_from_gunicorn(cfg: Any, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``Server`` keyword options from gunicorn settings and ``H3GREEN_*`` variables."""
    environ = dict(os.environ) if environ is None else environ
    defaults = Config()
    options: dict[str, Any] = {
        "max_connections": cfg.worker_connections,
        "keepalive_timeout": float(cfg.keepalive),
        "shutdown_timeout": float(cfg.graceful_timeout),
        "max_request_line": cfg.limit_request_line or _UNLIMITED_REQUEST_LINE,
        "max_header_count": cfg.limit_request_fields,
        "max_header_bytes": max(defaults.max_header_bytes, cfg.limit_request_field_size),
        "access_log": bool(cfg.accesslog),
        "forwarded_allow_ips": ",".join(cfg.forwarded_allow_ips),
    }
    for field in dataclasses.fields(Config):
        text = environ.get(_ENV_PREFIX + field.name.upper())
        if text is not None:
            options[field.name] = parse_field(field.name, text, _ENV_PREFIX + field.name.upper())
    return options


class _GunicornAccessHandler(logging.Handler):
    """Re-formats h3green's access records in gunicorn's ``access_log_format``."""

    def __init__(self, worker: H3Worker) -> None:
        super().__init__()
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        glog = self.worker.log
        if len(args) >= 6:  # a request, or the end of a stream (its reason follows)
            remote, method, target, version, status, length = args[:6]
        else:  # a request rejected before it had a head
            remote, status = args[0] if args else "-", args[1] if len(args) > 1 else "-"
            method, target, version, length = "-", "-", "1.1", "-"
        path, _, query = str(target).partition("?")
        atoms = {
            "h": remote,
            "l": "-",
            "u": "-",
            "t": glog.now(),
            "r": f"{method} {target} HTTP/{version}",
            "s": str(status),
            "m": method,
            "U": path,
            "q": query,
            "H": f"HTTP/{version}",
            "b": str(length),
            "B": length,
            "p": f"<{os.getpid()}>",
        }
        fmt = self.worker.cfg.access_log_format
        try:
            line = fmt % glog.atoms_wrapper_class(atoms)
        except Exception as exc:
            glog.error("access_log_format %r cannot format an access record: %s", fmt, exc)
            return
        glog.access_log.info(line)


class H3Worker(GeventWorker):  # type: ignore[misc]
    """A gunicorn worker running h3green's server (see the module docstring)."""

    app_h3: H3
    alive: bool

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app = self.wsgi
        if isinstance(app, WSGIAdapter):
            app = app.app
        if not isinstance(app, H3):
            self.log.error(
                "h3green.workers.H3Worker serves h3green apps only, but %r is %r; serve other "
                "WSGI applications with -k gevent, or mount them in an H3 app with app.mount()",
                self.cfg.wsgi_app or "the app",
                app,
            )
            sys.exit(_BOOT_ERROR)
        self.app_h3 = app

    def _route_logs(self) -> None:
        """h3green's records go to gunicorn's handlers unless the app configured its own."""
        errors = logging.getLogger("h3green")
        if not errors.handlers:
            for handler in self.log.error_log.handlers:
                errors.addHandler(handler)
            errors.setLevel(self.log.error_log.level)
            errors.propagate = False
        access = logging.getLogger("h3green.access")
        access.propagate = False
        if self.cfg.accesslog:
            access.addHandler(_GunicornAccessHandler(self))
            access.setLevel(logging.INFO)

    def _count_request(self, event: H3Event, response: Response) -> None:
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False

    def run(self) -> None:
        app = self.app_h3
        wsgi_mount.MULTIPROCESS = self.cfg.workers > 1
        self._route_logs()
        if self.max_requests < sys.maxsize:
            app.on_response.append(self._count_request)
        options = config_from_gunicorn(self.cfg)
        servers = []
        for sock in self.sockets:
            sock.setblocking(True)
            server = Server(app, listener=sock, **options)
            if self.cfg.workers > 1:
                # As gunicorn's gevent worker: accept one at a time, so a busy worker
                # leaves new connections to its idle siblings.
                server.set_max_accept(1)
            server.start()
            servers.append(server)
        beat = min(1.0, max(_POLL, self.timeout / 4))
        waited = 0.0
        while self.alive:
            if waited >= beat:
                self.notify()
                waited = 0.0
            gevent.sleep(_POLL)
            waited += _POLL
        self.notify()
        notifier = gevent.spawn(self._keep_notifying, beat)
        try:
            gevent.joinall([gevent.spawn(server.stop, self.cfg.graceful_timeout) for server in servers])
        finally:
            notifier.kill()

    def _keep_notifying(self, beat: float) -> None:
        # A shutdown may last up to graceful_timeout, which can exceed the worker timeout.
        while True:
            gevent.sleep(beat)
            self.notify()
