"""Routes of the store page: ``/`` (the dashboard), ``/login`` and ``/logout``, the
dashboard's figures (``/v1/dashboard``) and its two charts (``/ui/charts/*.svg``).

Included in the API app, so the page is on every API listener: on the Unix socket as it
is, on the TCP listener behind the API token (``BearerToken`` lets only ``/login`` and
the static files through; the login form trades the token for the session cookie).
Live figures come from ``/v1/events/stream`` in the browser (``static/dashboard.js``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import time
from datetime import date, datetime
from html import escape
from typing import Annotated, Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Match

from edge_agent.errors import EdgeAgentError
from edge_agent.retail import RetailService
from edge_agent.services import AgentServices
from edge_agent.web import charts, figures
from edge_agent.web.assets import page_text
from edge_agent.web.session import clear_cookie_header, session_value, set_cookie_header
from sync.errors import WireFormatError
from sync.wire import parse_ts, utc_now

router = APIRouter()
_MAX_FORM_BYTES = 4096


def get_services(request: Request) -> AgentServices:
    services: AgentServices = request.app.state.services
    return services


Services = Annotated[AgentServices, Depends(get_services)]
Day = Annotated[date | None, Query(alias="date", description="local date, default today")]


def _day(services: AgentServices, day: date | None) -> date:
    return day or datetime.now(ZoneInfo(services.config.store.timezone)).date()


def _token(services: AgentServices) -> str | None:
    tcp = services.config.api.tcp
    if tcp is None or tcp.token is None:
        return None
    return tcp.token.get_secret_value()


# -- the page and its login ------------------------------------------------------------------
@router.get("/", include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(page_text("dashboard.html"), headers={"Cache-Control": "no-store"})


def _login_page(store: str, error: str | None, status: int) -> HTMLResponse:
    text = page_text("login.html").replace("{{store}}", escape(store)).replace(
        "{{error}}", f'<p class="error" role="alert">{escape(error)}</p>' if error else "")
    return HTMLResponse(text, status_code=status, headers={"Cache-Control": "no-store"})


@router.get("/login", include_in_schema=False)
async def login_form(services: Services) -> HTMLResponse:
    return _login_page(services.config.store.id, None, 200)


def _given_token(body: bytes, content_type: str) -> str:
    """The ``token`` of a login: JSON (what the page's script sends; the API takes JSON
    bodies only) or a plain form post (a browser without script)."""
    if len(body) > _MAX_FORM_BYTES:
        return ""
    if content_type.split(";", 1)[0].strip().lower() == "application/json":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ""
        token = data.get("token") if isinstance(data, dict) else None
        return token.strip() if isinstance(token, str) else ""
    return parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0].strip()


@router.post("/login", include_in_schema=False)
async def login(request: Request, services: Services) -> Response:
    """Trade the API token (form field ``token``) for the page's session cookie."""
    expected = _token(services)
    if expected is None:  # no TCP listener: the socket needs no login
        return RedirectResponse("/", status_code=303)
    given = _given_token(await request.body(), request.headers.get("content-type", ""))
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        return _login_page(services.config.store.id, "Wrong token: try again.", 401)
    response = RedirectResponse("/", status_code=303)
    response.headers["set-cookie"] = set_cookie_header(
        session_value(expected), secure=request.url.scheme == "https")
    return response


@router.post("/logout", include_in_schema=False)
async def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.headers["set-cookie"] = clear_cookie_header()
    return response


# -- figures -----------------------------------------------------------------------------------
def _age_s(ts: str | None) -> float | None:
    if ts is None:
        return None
    try:
        return max(0.0, round((utc_now() - parse_ts(ts)).total_seconds(), 1))
    except WireFormatError:
        return None


async def _sync_state(services: AgentServices) -> dict[str, Any]:
    stats = await services.ledger.stats()
    sync = services.sync
    fig = sync.figures() if sync is not None else {}
    link = ("not configured" if sync is None
            else "connected" if sync.connected else "disconnected")
    return {"link": link, "backlog": stats.outbox_pending,
            "oldest_age_s": _age_s(stats.outbox_oldest_ts),
            "last_ack_at": fig.get("last_ack_at"), "ack_age_s": _age_s(fig.get("last_ack_at"))}


def _devices(services: AgentServices) -> list[dict[str, Any]]:
    return [dataclasses.asdict(status) for status in services.device_statuses.values()]


def _orders_route(request: Request) -> bool:
    """Whether this app answers ``GET /v1/orders``: asked of the router itself, because
    routes of an included router are not listed one by one in ``app.routes``."""
    scope = {"type": "http", "path": "/v1/orders", "method": "GET", "root_path": "",
             "path_params": {}}
    return any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes)


@router.get("/v1/dashboard", tags=["page"])
async def get_dashboard(request: Request, services: Services, day: Day = None
                        ) -> dict[str, Any]:
    """Everything the store page shows for one local day (default today): sales and units
    by hour against the same weekday last week, footfall and conversion by hour, top SKUs,
    the latest sales, low stock, devices, sync state and recent alerts."""
    the_day = _day(services, day)
    tz = services.config.store.timezone
    grid = figures.hour_grid(the_day, tz)

    def read(conn: Any) -> dict[str, Any]:
        return {"sales": figures.sales_by_hour(conn, the_day, tz),
                "footfall": figures.footfall_by_hour(conn, the_day, tz),
                "top_skus": figures.top_skus(conn, grid.start, grid.end),
                "recent_sales": figures.recent_sales(conn, grid.start, grid.end),
                "alerts": figures.recent_alerts(conn)}

    out = await services.ledger.read(read)
    retail: RetailService = request.app.state.retail
    try:
        low = await retail.low_stock()
    except EdgeAgentError:
        low = {"threshold": None, "items": []}
    return {"store": services.config.store.id, "date": the_day.isoformat(), "timezone": tz,
            "currency": services.config.store.currency, "generated_at": time.time(), **out,
            "low_stock": {**low, "items": low["items"][:20]},
            "devices": _devices(services), "sync": await _sync_state(services),
            "features": {"orders": _orders_route(request)}}


def _svg(text: str) -> Response:
    return Response(text, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.get("/ui/charts/sales.svg", include_in_schema=False)
async def sales_svg(services: Services, day: Day = None) -> Response:
    the_day = _day(services, day)
    tz = services.config.store.timezone
    data = await services.ledger.read(lambda conn: figures.sales_by_hour(conn, the_day, tz))
    return _svg(await asyncio.to_thread(charts.sales_chart, data))


@router.get("/ui/charts/footfall.svg", include_in_schema=False)
async def footfall_svg(services: Services, day: Day = None) -> Response:
    the_day = _day(services, day)
    tz = services.config.store.timezone
    data = await services.ledger.read(lambda conn: figures.footfall_by_hour(conn, the_day, tz))
    return _svg(await asyncio.to_thread(charts.footfall_chart, data))
