"""The store page's files and the self-hosted Swagger UI at ``/docs``, served by the kit
(:mod:`pagekit.files`) from installed packages only: this package's ``static/`` over the
kit's, and the Swagger UI dist of ``fastapi-offline``. Nothing is fetched from the web, so
``/docs`` and the page work on an offline terminal."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from pagekit.files import static_router, swagger_page

router = static_router("edge_agent.web")


@router.get("/docs", include_in_schema=False)
async def docs(request: Request) -> HTMLResponse:
    """Swagger UI over this app's OpenAPI document, with every asset served locally."""
    return swagger_page(request, f"{request.app.title} - docs")
