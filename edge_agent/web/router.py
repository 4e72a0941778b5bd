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
from collections.abc import Callable
from datetime import date, datetime
from html import escape
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edge_agent.errors import EdgeAgentError
from edge_agent.retail import RetailService
from edge_agent.services import AgentServices
from edge_agent.web import charts, figures
from edge_agent.web.session import SESSION
from pagekit.login import login_page, posted_token, signed_in, signed_out
from pagekit.pages import page_response
from pagekit.routes import has_route
from sync.errors import WireFormatError
from sync.wire import parse_ts, utc_now

router = APIRouter()


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
    return page_response("edge_agent.web", "dashboard.html", title="Store dashboard",
                         scripts=("dashboard.js",))


def _login_page(store: str, error: str | None, status: int) -> HTMLResponse:
    return login_page(title=f"Store {escape(store)} - sign in", heading=f"Store {escape(store)}",
                      label="API token", scripts=("login.js",), error=error, status=status,
                      hint="The token is the agent's <code>api.tcp</code> token (ask the "
                           "technician).")


@router.get("/login", include_in_schema=False)
async def login_form(services: Services) -> HTMLResponse:
    return _login_page(services.config.store.id, None, 200)


@router.post("/login", include_in_schema=False)
async def login(request: Request, services: Services) -> Response:
    """Trade the API token (form field ``token``) for the page's session cookie."""
    expected = _token(services)
    if expected is None:  # no TCP listener: the socket needs no login
        return RedirectResponse("/", status_code=303)
    given = posted_token(await request.body(), request.headers.get("content-type", ""))
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        return _login_page(services.config.store.id, "Wrong token: try again.", 401)
    return signed_in(SESSION, expected, secure=request.url.scheme == "https")


@router.post("/logout", include_in_schema=False)
async def logout() -> Response:
    return signed_out(SESSION)


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
            "features": {"orders": has_route(request, "/v1/orders")}}


@router.get("/ui/charts/sales.svg", include_in_schema=False)
async def sales_svg(services: Services, day: Day = None) -> Response:
    return await _chart(services, day, figures.sales_by_hour, charts.sales_chart)


@router.get("/ui/charts/footfall.svg", include_in_schema=False)
async def footfall_svg(services: Services, day: Day = None) -> Response:
    return await _chart(services, day, figures.footfall_by_hour, charts.footfall_chart)


async def _chart(services: AgentServices, day: date | None,
                 figure: Callable[[Any, date, str], Any], draw: Callable[[Any], str]
                 ) -> Response:
    """One day's hourly figure drawn as an SVG chart (drawn off the event loop)."""
    the_day = _day(services, day)
    tz = services.config.store.timezone
    data = await services.ledger.read(lambda conn: figure(conn, the_day, tz))
    return Response(await asyncio.to_thread(draw, data), media_type="image/svg+xml",
                    headers={"Cache-Control": "no-store"})
