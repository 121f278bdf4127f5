"""Utilities a web application reaches for after routing: sessions, basic auth,
validated input and a streaming reverse proxy. One module per concept; the optional
packages some of them need (``cryptography``, ``urllib3``, ``pydantic``) are imported
only when the feature is used, so importing ``h3green.utils`` never fails.
"""

from .auth import basic_auth as basic_auth
from .auth import require_basic_auth as require_basic_auth
from .proxy import proxy_request as proxy_request
from .session import MemoryStore as MemoryStore
from .session import RedisStore as RedisStore
from .session import Session as Session
from .session import SessionStore as SessionStore
from .session import use_session as use_session
from .validate import get_validated_query as get_validated_query
from .validate import read_validated_body as read_validated_body

__all__ = [
    "MemoryStore",
    "RedisStore",
    "Session",
    "SessionStore",
    "basic_auth",
    "get_validated_query",
    "proxy_request",
    "read_validated_body",
    "require_basic_auth",
    "use_session",
]
