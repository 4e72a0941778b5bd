"""A whole page: the kit's skeleton (``static/page.html``: charset, viewport, the shared
stylesheet) around a page's body file, with its title, scripts and own stylesheets, never
cached (a page is small and shows live figures)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi.responses import HTMLResponse

from pagekit.files import STATIC_PREFIX, page_text


def page_response(package: str, body: str, *, title: str, scripts: Sequence[str] = (),
                  styles: Sequence[str] = (), slots: Mapping[str, str] | None = None,
                  status: int = 200) -> HTMLResponse:
    """``package``'s ``static/<body>`` in the skeleton. ``title`` and the ``slots``
    (``{{name}}`` in the body) are HTML the caller wrote or escaped; ``scripts`` and
    ``styles`` are file names under the static prefix."""
    text = page_text(package, body)
    for name, html in (slots or {}).items():
        text = text.replace("{{" + name + "}}", html)
    head = [f"<title>{title}</title>",
            *(f'<link rel="stylesheet" href="{STATIC_PREFIX}/{name}">' for name in styles),
            *(f'<script src="{STATIC_PREFIX}/{name}" defer></script>' for name in scripts)]
    page = page_text("pagekit", "page.html").replace("{{head}}", "\n".join(head))
    return HTMLResponse(page.replace("{{body}}", text.rstrip("\n")), status_code=status,
                        headers={"Cache-Control": "no-store"})
