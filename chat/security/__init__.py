"""Security along its concerns: `passwords` (bcrypt in bounded lanes), `sessions` (server-side, cached for
seconds), `throttles` (sliding windows per key) and `origins` (CSRF and cross-site checks).

What the rest of chat uses is re-exported here.
"""

from .origins import check_request_origin, cross_site_navigation, foreign_origin, origin_allowed
from .passwords import HashGate, check_password_sync, hash_password_sync
from .sessions import (
    SESSION_COOKIE,
    ChatAuth,
    SessionCache,
    SessionUser,
    SignedIn,
    forget_sessions_of,
    login_required,
    request_user,
    revoke_other_sessions,
    revoke_session,
    revoke_user_sessions,
    session_active,
    signed_in,
    start_session,
)
from .throttles import MemoryThrottle, RedisThrottle, Throttle

__all__ = [
    "SESSION_COOKIE",
    "ChatAuth",
    "HashGate",
    "MemoryThrottle",
    "RedisThrottle",
    "SessionCache",
    "SessionUser",
    "SignedIn",
    "Throttle",
    "check_password_sync",
    "check_request_origin",
    "cross_site_navigation",
    "foreign_origin",
    "forget_sessions_of",
    "hash_password_sync",
    "login_required",
    "origin_allowed",
    "request_user",
    "revoke_other_sessions",
    "revoke_session",
    "revoke_user_sessions",
    "session_active",
    "signed_in",
    "start_session",
]
