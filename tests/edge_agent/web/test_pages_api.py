"""The store page's routes without a browser: open on the Unix socket, locked on TCP
(bearer token or session cookie, nothing else), a self-hosted /docs, the hub publishing
committed sales, bad cookies and bad forms answered cleanly."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_agent.web.session import SESSION
from tests.edge_agent.api.conftest import running_api
from tests.helpers.ports import free_port

TOKEN = "pages-api-token-abcdef"  # noqa: S105 - test-only token
PAY = [{"method": "cash", "amount": "2.50"}]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ea-pages-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_the_socket_serves_the_page_and_docs_without_login(short_dir: Path) -> None:
    async with running_api(short_dir) as api:
        page = await api.client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "/ui/static/dashboard.js" in page.text
        body = (await api.client.get("/v1/dashboard")).json()
        assert body["store"] == "S001"
        assert len(body["sales"]["hours"]) == 24
        assert body["sync"]["link"] == "not configured"
        assert body["features"] == {"orders": True}  # the fulfilment queue (edge_agent.orders)
        svg = await api.client.get("/ui/charts/sales.svg", params={"date": "2026-11-20"})
        assert svg.headers["content-type"] == "image/svg+xml"
        assert svg.text.startswith("<svg")
        docs = await api.client.get("/docs")
        assert "/ui/static/swagger/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text.lower()
        js = await api.client.get("/ui/static/swagger/swagger-ui-bundle.js")
        assert js.status_code == 200
        assert len(js.content) > 100_000
        assert (await api.client.get("/ui/static/nope.js")).status_code == 404
        assert (await api.client.get("/ui/static/..%2Fapi.sock")).status_code == 404
        assert (await api.client.get("/redoc")).status_code == 404
        # no TCP listener: the login form has nothing to check and sends the browser home
        login = await api.client.post("/login", data={"token": "x"})
        assert login.status_code == 303
        assert "set-cookie" not in login.headers
        bad_date = await api.client.get("/v1/dashboard", params={"date": "2026-13-01"})
        assert bad_date.status_code == 422
        assert bad_date.json()["code"] == "validation_error"


async def test_tcp_takes_the_bearer_or_the_cookie_and_nothing_else(short_dir: Path) -> None:
    token_file = short_dir / "token"
    token_file.write_text(TOKEN)
    port = free_port()
    async with running_api(short_dir, tcp={"port": port, "token_file": str(token_file)}
                           ) as api, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}"
                                                       ) as tcp:
        good_cookie = {"Cookie": f"{SESSION.name}={SESSION.value(TOKEN)}"}
        for headers in ({}, {"Cookie": "garbage;;; =="}, {"Cookie": f'{SESSION.name}="\\x00"'},
                        {"Cookie": f"{SESSION.name}={TOKEN}"},  # the token itself is no session
                        {"Authorization": f"Bearer {SESSION.value(TOKEN)}"}):
            for path in ("/v1/dashboard", "/v1/status", "/docs", "/openapi.json",
                         "/ui/charts/sales.svg", "/v1/events/stream"):
                r = await tcp.get(path, headers=headers)
                assert r.status_code == 401, (path, headers, r.status_code)
                # a wrong bearer token is named as such (h17-firsthour's invalid_token)
                assert r.json()["code"] == ("invalid_token" if "Authorization" in headers
                                            else "unauthorized")
        assert (await tcp.get("/v1/dashboard", headers=good_cookie)).status_code == 200
        assert (await tcp.get("/v1/dashboard", headers={
            "Authorization": f"Bearer {TOKEN}"})).status_code == 200
        assert (await tcp.get("/ui/static/style.css")).status_code == 200  # public files
        assert (await tcp.get("/login")).status_code == 200
        # a write with the cookie works (SameSite=Strict keeps other sites from sending it)
        r = await tcp.post("/v1/sales", headers={**good_cookie, "Idempotency-Key": "c-1"},
                           json={"terminal": "T1", "lines": [{"sku": "A-100"}],
                                 "payments": PAY})
        assert r.status_code == 201, r.text
        # the login form: right token -> cookie; wrong, empty or oversized -> refused
        ok = await tcp.post("/login", data={"token": TOKEN})
        assert ok.status_code == 303
        cookie = ok.headers["set-cookie"]
        assert f"{SESSION.name}={SESSION.value(TOKEN)}" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert TOKEN not in cookie
        for form in ({"token": ""}, {"token": TOKEN + "x"}, {"other": TOKEN}):
            r = await tcp.post("/login", data=form)
            assert r.status_code == 401
            assert "Wrong token" in r.text
        js = await tcp.post("/login", json={"token": TOKEN})  # what the page's script sends
        assert js.status_code == 303
        assert f"{SESSION.name}={SESSION.value(TOKEN)}" in js.headers["set-cookie"]
        for body in (b"{", b"[]", b'{"token": 5}', b'{"token": "nope"}'):
            r = await tcp.post("/login", content=body,
                               headers={"Content-Type": "application/json"})
            assert r.status_code == 401, body
        huge = await tcp.post("/login", data={"token": "x" * 10_000})
        assert huge.status_code == 413  # the body limit stops it before the form
        out = await tcp.post("/logout", headers=good_cookie)
        assert out.status_code == 303
        assert "Max-Age=0" in out.headers["set-cookie"]
        assert api.services.state is not None  # still serving


async def test_committed_writes_are_published_without_payments_or_customer(
        short_dir: Path) -> None:
    async with running_api(short_dir) as api, \
            api.services.hub.subscribe({"sale", "receipt"}) as queue:
        r = await api.client.post(
            "/v1/sales", headers={"Idempotency-Key": "pub-1"},
            json={"terminal": "T1", "lines": [{"sku": "A-100", "qty": 1}],
                  "payments": PAY, "customer": "LOY-9"})
        assert r.status_code == 201, r.text
        topic, data = await queue.get()
        assert topic == "sale"
        assert data["units"] == 1
        assert data["total"] == "2.50"
        assert data["alerts"] == ["oversold"]
        assert "payments" not in data
        assert "customer" not in data
        assert "LOY-9" not in str(data)
        again = await api.client.post(
            "/v1/sales", headers={"Idempotency-Key": "pub-1"},
            json={"terminal": "T1", "lines": [{"sku": "A-100", "qty": 1}],
                  "payments": PAY, "customer": "LOY-9"})
        assert again.headers.get("idempotent-replayed") == "true"
        r = await api.client.post("/v1/receipts", headers={"Idempotency-Key": "rc-1"},
                                  json={"lines": [{"sku": "A-100", "qty": 3}]})
        assert r.status_code == 201
        topic, data = await queue.get()  # the replayed sale published nothing
        assert topic == "receipt"
        assert data["units"] == 3
