"""The kit's file routes over a real app: the kit's files and a page's own side by side,
the offline Swagger UI, and the login page and form shared by both pages."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from pagekit.files import static_router
from pagekit.login import login_page, posted_token
from pagekit.pages import page_response


def _client(package: str) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(static_router(package))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_page_gets_the_kit_files_and_its_own() -> None:
    async with _client("central") as client:
        style = await client.get("/ui/static/style.css")
        assert style.status_code == 200
        assert style.headers["content-type"].startswith("text/css")
        assert style.headers["cache-control"] == "no-cache"
        assert "--fg" in style.text
        own = await client.get("/ui/static/ops.css")
        assert own.status_code == 200
        assert ".drill-grid" in own.text
        assert (await client.get("/ui/static/ops.html")).status_code == 200
        assert (await client.get("/ui/static/dashboard.html")).status_code == 404  # the store's
        assert (await client.get("/ui/static/nothing.js")).status_code == 404
    async with _client("edge_agent.web") as client:
        assert (await client.get("/ui/static/style.css")).text == style.text
        assert (await client.get("/ui/static/ops.css")).status_code == 404  # central's


async def test_the_swagger_ui_comes_from_the_installed_package_and_is_cached() -> None:
    async with _client("edge_agent.web") as client:
        js = await client.get("/ui/static/swagger/swagger-ui-bundle.js")
        assert js.status_code == 200
        assert len(js.content) > 100_000
        assert js.headers["cache-control"] == "max-age=86400"
        assert (await client.get("/ui/static/swagger/..%2Fstyle.css")).status_code == 404


def test_the_login_page_fills_its_slots_and_escapes_the_error() -> None:
    page = login_page(title="T", heading="H &amp; co", label="L", hint="<code>x</code>",
                      scripts=("login.js",), error="<b>bad</b>", status=401)
    text = bytes(page.body).decode()
    assert page.status_code == 401
    assert page.headers["cache-control"] == "no-store"
    assert text.startswith("<!doctype html>")
    assert text.rstrip().endswith("</body>\n</html>")
    assert "<title>T</title>" in text
    assert '<link rel="stylesheet" href="/ui/static/style.css">' in text
    assert '<script src="/ui/static/login.js" defer></script>' in text
    assert "<h1>H &amp; co</h1>" in text
    assert "<code>x</code>" in text
    assert "&lt;b&gt;bad&lt;/b&gt;" in text
    assert "<b>bad</b>" not in text
    assert "{{" not in text
    plain = bytes(login_page(title="T", heading="H", label="L", hint="").body).decode()
    assert 'role="alert"' not in plain
    assert "{{" not in plain


def test_a_page_is_the_skeleton_around_its_body_with_its_own_styles() -> None:
    page = page_response("central", "ops.html", title="Ops", styles=("ops.css",),
                         scripts=("ops.js",))
    text = bytes(page.body).decode()
    assert text.count("<head>") == 1
    assert text.count("<body>") == 1
    assert text.index("/ui/static/style.css") < text.index("/ui/static/ops.css")
    assert '<script src="/ui/static/ops.js" defer></script>' in text
    assert page.headers["cache-control"] == "no-store"


def test_a_login_posts_its_token_as_a_form_or_as_json() -> None:
    form = "application/x-www-form-urlencoded"
    assert posted_token(b"token=+abc+", form) == "abc"
    assert posted_token(b'{"token": " abc "}', "application/json; charset=utf-8") == "abc"
    for body, kind in ((b"", form), (b"token=", form), (b"{", "application/json"),
                       (b'{"token": 5}', "application/json"), (b"[]", "application/json"),
                       (b"token=" + b"x" * 5000, form)):
        assert posted_token(body, kind) == "", body[:20]
