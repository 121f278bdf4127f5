"""WSGI in both directions, under the import path first documented.

An ``H3`` app served by any WSGI server lives in ``h3green.wsgi_adapter``; any WSGI app
mounted inside an ``H3`` app lives in ``h3green.wsgi_mount``.
"""

from .wsgi_adapter import WSGIAdapter, WSGIConfig, event_from_environ, serve_wsgi
from .wsgi_mount import WSGIMount

__all__ = ["WSGIAdapter", "WSGIConfig", "WSGIMount", "event_from_environ", "serve_wsgi"]
