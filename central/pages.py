"""The operations page of the reference central and the routes behind it: ``/`` (a grid of
every store, a store's drill-down, open alerts with acknowledge, ATP lookup and orders
board when the central has them), ``/login`` and ``/logout``, ``/v1/grid``,
``/v1/alerts/open``, ``POST /v1/alerts/{id}/ack``, a store's pending commands, and a
self-hosted Swagger UI at ``/docs`` (files from the installed ``fastapi-offline``).

Protected like every operator endpoint (``central.session``): the admin token, or the
session cookie the login form gives for it. The app hands the service in through
``app.state.service`` (set by ``central.api.create_app``).
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from central.core import Core, Publish
from central.page_queries import ack_alert, open_alerts, pending_commands, stores_grid
from central.session import SESSION, operator_ok
from pagekit.files import static_router, swagger_page
from pagekit.login import login_page, posted_token, signed_in, signed_out
from pagekit.pages import page_response
from pagekit.routes import has_route
from sync.wire import STORE_RE, now_ts

if TYPE_CHECKING:
    from central.service import CentralService

router = APIRouter()
router.include_router(static_router("central"))  # /ui/static: this page's and the kit's files


def _service(request: Request) -> CentralService:
    service: CentralService = request.app.state.service
    return service


def operator(request: Request) -> None:
    expected = _service(request).tokens.admin_token()
    if operator_ok(request, expected):
        return
    if expected is None:
        raise HTTPException(403, "no admin token configured: loopback clients only")
    raise HTTPException(401, "missing or invalid admin token",
                        headers={"WWW-Authenticate": "Bearer"})


Operator = [Depends(operator)]


# -- files ------------------------------------------------------------------------------------
@router.get("/docs", include_in_schema=False)
async def docs(request: Request) -> Response:
    """Swagger UI for operators (sign in first), every asset served locally."""
    if not operator_ok(request, _service(request).tokens.admin_token()):
        return RedirectResponse("/login", status_code=303)
    return swagger_page(request, "edge-central - docs")


# -- the page and its login ------------------------------------------------------------------
@router.get("/", include_in_schema=False)
async def ops_page(request: Request) -> Response:
    if not operator_ok(request, _service(request).tokens.admin_token()):
        return RedirectResponse("/login", status_code=303)
    return page_response("central", "ops.html", title="Central operations",
                         styles=("ops.css",), scripts=("ops.js",))


def _login_page(error: str | None, status: int) -> HTMLResponse:
    return login_page(title="edge-central operations - sign in", heading="Central operations",
                      label="Operator (admin) token", error=error, status=status,
                      hint="The central's <code>admin_token_file</code> (or "
                           "<code>EDGE_CENTRAL_ADMIN_TOKEN</code>).")


@router.get("/login", include_in_schema=False)
async def login_form() -> HTMLResponse:
    return _login_page(None, 200)


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Trade the admin token (form field ``token``) for the page's session cookie."""
    expected = _service(request).tokens.admin_token()
    if expected is None:  # central generates one at first start; it was removed since
        return _login_page("No admin token is configured: see the central's admin token "
                           "file (README, Security and trust).", 403)
    given = posted_token(await request.body(),
                         request.headers.get("content-type", "")).encode()
    if not given or not hmac.compare_digest(given, expected):
        return _login_page("Wrong token: try again.", 401)
    return signed_in(SESSION, expected, secure=request.url.scheme == "https")


@router.post("/logout", include_in_schema=False)
async def logout() -> Response:
    return signed_out(SESSION)


# -- data -------------------------------------------------------------------------------------
@router.get("/v1/grid", dependencies=Operator, tags=["page"])
def get_grid(request: Request) -> dict[str, Any]:
    """Every store: online/offline, backlog, ack lag, pending commands, last digest, open
    alerts; plus which optional boards (ATP, orders) this central serves."""
    service = _service(request)
    with service.db.reading() as conn:
        stores = stores_grid(conn)
    return {"stores": stores, "mqtt_connected": service.link.connected.is_set(),
            "generated_at": time.time(),
            "features": {"atp": has_route(request, "/v1/atp"),
                         "orders": has_route(request, "/v1/orders")}}


@router.get("/v1/alerts/open", dependencies=Operator, tags=["page"])
def get_open_alerts(request: Request, store: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
    """Alerts nobody acknowledged yet, newest first."""
    with _service(request).db.reading() as conn:
        return {"alerts": open_alerts(conn, store, limit)}


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[str, Field(max_length=500)] | None = None


@router.post("/v1/alerts/{alert_id}/ack", dependencies=Operator, tags=["page"])
def post_alert_ack(request: Request, alert_id: int, body: AckIn | None = None
                   ) -> dict[str, Any]:
    """Acknowledge an alert: it leaves the open list (``GET /v1/alerts/open``) and the
    grid's count; ``GET /v1/alerts`` still lists it. Acknowledging twice is harmless."""
    note = body.note if body is not None else None
    ts = now_ts()

    def job(core: Core) -> tuple[str, list[Publish]]:
        return ack_alert(core.conn, alert_id, ts, note), []

    outcome = _service(request).call(job)
    if outcome == "unknown":
        raise HTTPException(404, f"no alert {alert_id}")
    return {"id": alert_id, "acked": True, "already": outcome == "already"}


@router.get("/v1/stores/{store}/commands/pending", dependencies=Operator, tags=["page"])
def get_pending_commands(request: Request, store: str) -> dict[str, Any]:
    """Commands issued to the store and not acknowledged yet, oldest first."""
    if STORE_RE.fullmatch(store) is None:
        raise HTTPException(404, "unknown store")
    with _service(request).db.reading() as conn:
        return {"store": store, "commands": pending_commands(conn, store)}
