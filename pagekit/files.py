"""A page's files from installed packages only: the page's own ``static/`` over the kit's
(the shared stylesheet, the login page), and the Swagger UI dist ``fastapi-offline``
ships. Nothing is fetched from the web, so the pages and ``/docs`` work offline.

:func:`static_router` serves them under ``/ui/static``; :func:`swagger_page` is the
``/docs`` page over them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Final

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC_PREFIX: Final = "/ui/static"
TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
                ".png": "image/png", ".svg": "image/svg+xml"}
_SWAGGER: Final = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")


def _folder(package: str) -> dict[str, Path]:
    folder = Path(str(resources.files(package) / "static"))
    return {p.name: p for p in folder.iterdir() if p.suffix in TYPES}


@cache
def page_files(package: str) -> dict[str, Path]:
    """The files a page serves: the kit's, then ``package``'s own ``static/`` (which wins
    over a kit file of the same name)."""
    return {**_folder("pagekit"), **_folder(package)}


@cache
def swagger_files() -> dict[str, Path]:
    folder = Path(str(resources.files("fastapi_offline") / "static"))
    return {name: folder / name for name in _SWAGGER}


def page_text(package: str, name: str) -> str:
    return page_files(package)[name].read_text(encoding="utf-8")


def static_router(package: str) -> APIRouter:
    """``GET /ui/static/{name}`` (the page's files, revalidated on every load) and
    ``GET /ui/static/swagger/{name}`` (the Swagger UI's, cached for a day)."""
    router = APIRouter()
    for path, name, files, what, cache_control in (
        ("/{name}", "static_file", lambda: page_files(package), "static file", "no-cache"),
        ("/swagger/{name}", "swagger_file", swagger_files, "Swagger UI file",
         "max-age=86400"),
    ):
        router.add_api_route(STATIC_PREFIX + path, _file_route(files, what, cache_control),
                             name=name, methods=["GET"], include_in_schema=False)
    return router


def _file_route(files: Callable[[], dict[str, Path]], what: str, cache_control: str
                ) -> Callable[[str], Awaitable[FileResponse]]:
    async def file(name: str) -> FileResponse:
        path = files().get(name)
        if path is None:
            raise HTTPException(404, f"no {what} {name}")
        return FileResponse(path, media_type=TYPES[path.suffix],
                            headers={"Cache-Control": cache_control})
    return file


def swagger_page(request: Request, title: str) -> HTMLResponse:
    """Swagger UI over this app's OpenAPI document, with every asset served locally."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url or "/openapi.json",
        title=title,
        swagger_js_url=f"{STATIC_PREFIX}/swagger/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC_PREFIX}/swagger/swagger-ui.css",
        swagger_favicon_url=f"{STATIC_PREFIX}/swagger/favicon.png",
    )
