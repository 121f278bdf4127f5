"""HTTP/1.1 without I/O: bytes in, request events out, response bytes back.

Layers, one module each:

* ``events``: what every driver yields and raises (events, sentinels, limits,
  ``ProtocolError``);
* ``driver``: the ``Driver`` Protocol the connection loop types against, and the choice
  of driver for ``Config.http_parser``;
* ``h11_driver``: ``H11Driver``, h11 underneath (the reference, and the fallback);
* ``httptools_driver`` on ``llhttp_callbacks``: ``HttptoolsDriver``, llhttp underneath
  (the default, ~2.5x faster);
* ``framing``: response framing (head, body pieces, end), shared by both drivers.
"""

from .driver import Driver as Driver
from .driver import driver_class as driver_class
from .events import NEED_DATA as NEED_DATA
from .events import PAUSED as PAUSED
from .events import Body as Body
from .events import ClientClosed as ClientClosed
from .events import EndOfBody as EndOfBody
from .events import ProtocolError as ProtocolError
from .events import RequestHead as RequestHead

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Body",
    "ClientClosed",
    "Driver",
    "EndOfBody",
    "ProtocolError",
    "RequestHead",
    "driver_class",
]
