"""Utilities a web application reaches for after routing: sessions, basic auth,
validated input and a streaming reverse proxy. One module per concept; the optional
packages some of them need (``cryptography``, ``urllib3``, ``pydantic``) are imported
only when the feature is used, so importing ``h3green.utils`` never fails.
"""

from .session import MemoryStore as MemoryStore
from .session import Session as Session
from .session import SessionStore as SessionStore
from .session import use_session as use_session

__all__ = [
    "MemoryStore",
    "Session",
    "SessionStore",
    "use_session",
]
