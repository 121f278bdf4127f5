"""Web utilities H3 and Flask users expect, one module per concept.

``static`` (files from a directory), ``cache`` (conditional requests), ``cors``
(cross-origin requests), ``multipart`` (form uploads), ``forwarded`` (client address and
URL behind proxies). Everything public is re-exported here::

    from h3green.utils import StaticFiles, cors, get_request_ip
"""

from .cache import etag_matches as etag_matches
from .cache import handle_cache_headers as handle_cache_headers
from .cache import is_not_modified as is_not_modified
from .cors import CORSOptions as CORSOptions
from .cors import cors as cors
from .cors import handle_cors as handle_cors
from .forwarded import get_request_host as get_request_host
from .forwarded import get_request_ip as get_request_ip
from .forwarded import get_request_protocol as get_request_protocol
from .forwarded import get_request_url as get_request_url
from .multipart import FormData as FormData
from .multipart import UploadFile as UploadFile
from .multipart import parse_multipart as parse_multipart
from .static import StaticFiles as StaticFiles
from .static import serve_static as serve_static

__all__ = [
    "CORSOptions",
    "FormData",
    "StaticFiles",
    "UploadFile",
    "cors",
    "etag_matches",
    "get_request_host",
    "get_request_ip",
    "get_request_protocol",
    "get_request_url",
    "handle_cache_headers",
    "handle_cors",
    "is_not_modified",
    "parse_multipart",
    "serve_static",
]
