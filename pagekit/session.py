"""A page's login session cookie: the value a correct token earns, reading it back from a
``Cookie:`` header, and the ``Set-Cookie`` values that set and clear it.

The cookie holds HMAC-SHA256(token, label), never the token itself: it proves the holder
typed the token, it is useless as a bearer token elsewhere, and it dies when the token is
rotated. It is ``HttpOnly`` (no script reads it) and ``SameSite=Strict`` (no other site's
page or form sends it, so POST routes need no CSRF token).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie
from typing import Final

SHIFT_S: Final = 12 * 3600  # one shift; the user logs in again the next day


@dataclasses.dataclass(frozen=True, slots=True)
class SessionCookie:
    """One page's cookie: its ``name``, the HMAC ``label`` and its lifetime."""

    name: str
    label: bytes
    max_age: int = SHIFT_S

    def value(self, token: str | bytes) -> str:
        """The cookie value the token earns (hex HMAC-SHA256 of the label)."""
        key = token.encode() if isinstance(token, str) else token
        return hmac.new(key, self.label, hashlib.sha256).hexdigest()

    def read(self, header: str | bytes) -> str | None:
        """This cookie's value in a ``Cookie:`` request header (None if absent)."""
        text = header.decode("latin-1") if isinstance(header, bytes) else header
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(text)
        except CookieError:
            return None
        morsel = jar.get(self.name)
        return None if morsel is None else morsel.value

    def valid(self, header: str | bytes, expected: str) -> bool:
        """Whether the header carries exactly ``expected`` (compared in constant time)."""
        given = self.read(header)
        return given is not None and hmac.compare_digest(given.encode(), expected.encode())

    def set_header(self, value: str, *, secure: bool) -> str:
        """A ``Set-Cookie`` value; ``Secure`` only over HTTPS (loopback listeners are HTTP)."""
        flags = f"{self.name}={value}; Path=/; Max-Age={self.max_age}; HttpOnly; SameSite=Strict"
        return flags + ("; Secure" if secure else "")

    def clear_header(self) -> str:
        return f"{self.name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"


def bearer(authorization: str | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header (None if there is none)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode()
