"""h3green: an H3-style HTTP framework on gevent, with first-class Server-Sent Events.

It speaks HTTP/1.1 through httptools (llhttp, in C) by default, with h11 as the pure-Python
reference parser (``Config.http_parser``).

::

    from h3green import H3, serve

    app = H3()

    @app.get("/hello/:name")
    def hello(event):
        return {"hello": event.params["name"]}

    serve(app, port=3000)
"""

from ._patching import run_as_command as _run_as_command

# Patch gevent now, before anything below imports socket, ssl or threading.
if _run_as_command():
    from gevent import monkey as _monkey

    _monkey.patch_all()

from .app import H3 as H3
from .channel import Channel as Channel
from .config import Config as Config
from .datastructures import Headers as Headers
from .datastructures import QueryParams as QueryParams
from .errors import BackpressureDetected as BackpressureDetected
from .errors import ChannelUnavailable as ChannelUnavailable
from .errors import ConnectionLost as ConnectionLost
from .errors import H3Error as H3Error
from .errors import HTTPError as HTTPError
from .errors import ResponseAlreadySent as ResponseAlreadySent
from .errors import SSEAlreadyStarted as SSEAlreadyStarted
from .errors import SSEError as SSEError
from .errors import UsageError as UsageError
from .errors import WriterClosed as WriterClosed
from .event import H3Event as H3Event
from .response import Response as Response
from .response import html as html
from .response import no_content as no_content
from .response import redirect as redirect
from .server import Server as Server
from .server import serve as serve
from .sse import EventStream as EventStream
from .sse import SSEEvent as SSEEvent
from .sse import SSEWriter as SSEWriter

__version__ = "0.2.0"

__all__ = [
    "H3",
    "BackpressureDetected",
    "Channel",
    "ChannelUnavailable",
    "Config",
    "ConnectionLost",
    "EventStream",
    "H3Error",
    "H3Event",
    "HTTPError",
    "Headers",
    "QueryParams",
    "Response",
    "ResponseAlreadySent",
    "SSEAlreadyStarted",
    "SSEError",
    "SSEEvent",
    "SSEWriter",
    "Server",
    "UsageError",
    "WriterClosed",
    "html",
    "no_content",
    "redirect",
    "serve",
]
