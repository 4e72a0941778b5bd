"""Who may use the operator endpoints and the operations page: the admin token as a bearer
header, or the page's session cookie that the login form gives for it.

The cookie holds HMAC-SHA256(admin token, label), never the token: it dies when the token
is rotated and is no bearer token elsewhere. ``HttpOnly`` keeps it from scripts and
``SameSite=Strict`` from other sites' pages and forms (so the operator POST routes need no
CSRF token). With no admin token configured, only loopback clients get in (as before).
"""

from __future__ import annotations

import hmac
from typing import Final

from fastapi import Request

from pagekit.session import SessionCookie, bearer

SESSION: Final = SessionCookie("edge_central_session",
                               b"edge-central operations page session v1")
LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "testclient"})


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
    return SESSION.valid(request.headers.get("cookie", ""), SESSION.value(expected))
