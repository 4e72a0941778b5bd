"""Whether the app a page is served by answers an optional route (an orders board, an ATP
lookup), so the page shows only the boards that work."""

from __future__ import annotations

from fastapi import Request
from starlette.routing import Match


def has_route(request: Request, path: str, method: str = "GET") -> bool:
    """Whether this app answers ``method path``: asked of the router itself, because
    routes of an included router are not listed one by one in ``app.routes``."""
    scope = {"type": "http", "path": path, "method": method, "root_path": "",
             "path_params": {}}
    return any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes)
