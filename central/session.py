"""Who may use the operator endpoints and the operations page: the admin token as a bearer
header, or the page's session cookie that the login form gives for it.

The cookie holds HMAC-SHA256(admin token, label), never the token: it dies when the token
is rotated and is no bearer token elsewhere. ``HttpOnly`` keeps it from scripts and
``SameSite=Strict`` from other sites' pages and forms (so the operator POST routes need no
CSRF token). With no admin token configured, only loopback clients get in (as before).
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie
from typing import Final

from fastapi import Request

COOKIE: Final = "edge_central_session"
_LABEL: Final = b"edge-central operations page session v1"
MAX_AGE_S: Final = 12 * 3600
LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "testclient"})


def session_value(token: bytes) -> str:
    return hmac.new(token, _LABEL, hashlib.sha256).hexdigest()


def _cookie(header: str, name: str = COOKIE) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return None if morsel is None else morsel.value


def bearer(authorization: str | None) -> bytes | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode()


def is_loopback(request: Request) -> bool:
    return (request.client.host if request.client else "") in LOOPBACK


def operator_ok(request: Request, expected: bytes | None) -> bool:
    """True when the request carries the admin token or the page session made from it.
    With no admin token there is no operator access (central generates one at first start)."""
    if expected is None:
        return False
    given = bearer(request.headers.get("authorization"))
    if given is not None and hmac.compare_digest(given, expected):
        return True
    cookie = _cookie(request.headers.get("cookie", ""))
    return cookie is not None and hmac.compare_digest(cookie.encode(),
                                                      session_value(expected).encode())


def set_cookie_header(value: str, *, secure: bool) -> str:
    flags = f"{COOKIE}={value}; Path=/; Max-Age={MAX_AGE_S}; HttpOnly; SameSite=Strict"
    return flags + ("; Secure" if secure else "")


def clear_cookie_header() -> str:
    return f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
