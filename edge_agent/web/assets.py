"""Static files of the pages and of the self-hosted Swagger UI, from installed packages
only (this package's ``static/`` and the Swagger UI dist that ``fastapi-offline`` ships):
nothing is fetched from the web, so ``/docs`` and the page work on an offline terminal."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Final

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC_PREFIX: Final = "/ui/static"
_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
                 ".png": "image/png", ".svg": "image/svg+xml"}
_SWAGGER: Final = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")


@cache
def _ours() -> dict[str, Path]:
    folder = Path(str(resources.files("edge_agent.web") / "static"))
    return {p.name: p for p in folder.iterdir() if p.suffix in _TYPES}


@cache
def _swagger() -> dict[str, Path]:
    folder = Path(str(resources.files("fastapi_offline") / "static"))
    return {name: folder / name for name in _SWAGGER}


def page_text(name: str) -> str:
    return _ours()[name].read_text(encoding="utf-8")


router = APIRouter(include_in_schema=False)


@router.get(STATIC_PREFIX + "/{name}")
async def static_file(name: str) -> FileResponse:
    path = _ours().get(name)
    if path is None:
        raise HTTPException(404, f"no static file {name}")
    return FileResponse(path, media_type=_TYPES[path.suffix],
                        headers={"Cache-Control": "no-cache"})


@router.get(STATIC_PREFIX + "/swagger/{name}")
async def swagger_file(name: str) -> FileResponse:
    path = _swagger().get(name)
    if path is None:
        raise HTTPException(404, f"no Swagger UI file {name}")
    return FileResponse(path, media_type=_TYPES[path.suffix],
                        headers={"Cache-Control": "max-age=86400"})


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    """Swagger UI over this app's OpenAPI document, with every asset served locally."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url or "/openapi.json",
        title=f"{request.app.title} - docs",
        swagger_js_url=f"{STATIC_PREFIX}/swagger/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC_PREFIX}/swagger/swagger-ui.css",
        swagger_favicon_url=f"{STATIC_PREFIX}/swagger/favicon.png",
    )
