"""Utilities H3 and Flask users reach for after routing, one module per concept.

``static`` (files from a directory), ``cache`` (conditional requests), ``cors``
(cross-origin requests), ``multipart`` (form uploads), ``forwarded`` (client address and
URL behind proxies), ``session`` (sealed-cookie sessions), ``auth`` (basic auth),
``validate`` (validated bodies and queries) and ``proxy`` (a streaming reverse proxy).
The optional packages some of them need (``multipart``, ``cryptography``, ``urllib3``,
``pydantic``) are imported only when the feature is used, so importing
``h3green.utils`` never fails. Everything public is re-exported here::

    from h3green.utils import StaticFiles, cors, get_request_ip, use_session
"""

from .auth import basic_auth as basic_auth
from .auth import require_basic_auth as require_basic_auth
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
from .proxy import proxy_request as proxy_request
from .session import MemoryStore as MemoryStore
from .session import RedisStore as RedisStore
from .session import Session as Session
from .session import SessionStore as SessionStore
from .session import use_session as use_session
from .static import StaticFiles as StaticFiles
from .static import serve_static as serve_static
from .validate import get_validated_query as get_validated_query
from .validate import read_validated_body as read_validated_body

__all__ = [
    "CORSOptions",
    "FormData",
    "MemoryStore",
    "RedisStore",
    "Session",
    "SessionStore",
    "StaticFiles",
    "UploadFile",
    "basic_auth",
    "cors",
    "etag_matches",
    "get_request_host",
    "get_request_ip",
    "get_request_protocol",
    "get_request_url",
    "get_validated_query",
    "handle_cache_headers",
    "handle_cors",
    "is_not_modified",
    "parse_multipart",
    "proxy_request",
    "read_validated_body",
    "require_basic_auth",
    "serve_static",
    "use_session",
]
