"""The page's login session: the cookie a correct API token earns, and how it is checked.

The cookie holds HMAC-SHA256(token, label), never the token itself: it proves the holder
typed the token, it is useless as a bearer token elsewhere, and it dies when the token is
rotated. It is ``HttpOnly`` (no script reads it) and ``SameSite=Strict`` (no other site's
page or form sends it, so the API's POST routes need no CSRF token).
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie
from typing import Final

COOKIE: Final = "edge_agent_session"
_LABEL: Final = b"edge-agent store page session v1"
MAX_AGE_S: Final = 12 * 3600  # one shift; the manager logs in again the next day


def session_value(token: str | bytes) -> str:
    key = token.encode() if isinstance(token, str) else token
    return hmac.new(key, _LABEL, hashlib.sha256).hexdigest()


def cookie_from_header(header: str | bytes, name: str = COOKIE) -> str | None:
    """The value of cookie ``name`` in a ``Cookie:`` request header (None if absent)."""
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(text)
    except CookieError:
        return None
    morsel = jar.get(name)
    return None if morsel is None else morsel.value


def valid_session(header: str | bytes, expected: str, name: str = COOKIE) -> bool:
    given = cookie_from_header(header, name)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def set_cookie_header(value: str, *, secure: bool, name: str = COOKIE,
                      max_age: int = MAX_AGE_S) -> str:
    """A ``Set-Cookie`` value; ``Secure`` only over HTTPS (the loopback listener is HTTP)."""
    flags = f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    return flags + ("; Secure" if secure else "")


def clear_cookie_header(name: str = COOKIE) -> str:
    return f"{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
