"""A page's sign-in: the kit's login page (``static/login.html``) filled in, the token a
login form posted, and the redirects that set and clear the session cookie."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Final
from urllib.parse import parse_qs

import orjson
from fastapi.responses import HTMLResponse, RedirectResponse

from pagekit.pages import page_response
from pagekit.session import SessionCookie

MAX_FORM_BYTES: Final = 4096


def login_page(*, title: str, heading: str, label: str, hint: str,
               scripts: Sequence[str] = (), error: str | None = None,
               status: int = 200) -> HTMLResponse:
    """The kit's login page (``static/login.html``): ``title``, ``heading``, ``label`` and
    ``hint`` are HTML the caller wrote or escaped; the error, if any, is escaped here."""
    return page_response("pagekit", "login.html", title=title, scripts=scripts, slots={
        "heading": heading, "label": label, "hint": hint,
        "error": f'<p class="error" role="alert">{escape(error)}</p>' if error else "",
    }, status=status)


def posted_token(body: bytes, content_type: str) -> str:
    """The ``token`` of a login: JSON (what a page's script sends) or a plain form post
    (a browser without script); "" when absent or the body is too large."""
    if len(body) > MAX_FORM_BYTES:
        return ""
    if content_type.split(";", 1)[0].strip().lower() == "application/json":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ""
        token = data.get("token") if isinstance(data, dict) else None
        return token.strip() if isinstance(token, str) else ""
    return parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0].strip()


def signed_in(cookie: SessionCookie, token: str | bytes, *, secure: bool) -> RedirectResponse:
    """To the page (``/``) with the session cookie the token earns."""
    response = RedirectResponse("/", status_code=303)
    response.headers["set-cookie"] = cookie.set_header(cookie.value(token), secure=secure)
    return response


def signed_out(cookie: SessionCookie) -> RedirectResponse:
    """Back to ``/login`` with the session cookie cleared."""
    response = RedirectResponse("/login", status_code=303)
    response.headers["set-cookie"] = cookie.clear_header()
    return response
