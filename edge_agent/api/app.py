"""The local API app: retail operations for POS software, live device events, status and
ops endpoints for the technician CLI, Prometheus metrics.

Every error is JSON ``{"code": stable_code, "message": human text}``; validation errors
add ``errors`` with field paths (never the rejected input, which could be card data).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
import structlog
from fastapi import FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge_agent.api.middleware import (
    ASGIApp,
    BodyLimit,
    Message,
    Receive,
    RequestMetrics,
    Scope,
    Send,
    send_error,
)
from edge_agent.api.recalls import router as recalls_router
from edge_agent.customers.api import router as customers_router
from edge_agent.errors import (
    DiskFull,
    EdgeAgentError,
    FactRejected,
    LedgerError,
    OperationError,
)
from edge_agent.ledger import event_key, read_epochs
from edge_agent.orders.api import router as orders_router
from edge_agent.retail import RetailService, WriteResult
from edge_agent.retail.requests import (
    CARD_DATA_MESSAGE,
    AdjustmentRequest,
    BasketItemIn,
    CheckoutRequest,
    CountRequest,
    FreeText,
    FulfilmentRequest,
    ReceiptRequest,
    ReturnRequest,
    SaleRequest,
    SessionOpenRequest,
    SessionScanIn,
    TransferRequest,
)
from edge_agent.rfid.api import router as rfid_router
from edge_agent.services import AgentServices, SyncControl
from edge_agent.visitors.api import router as visitors_router
from edge_agent.web import pages_router
from sync.errors import WireFormatError
from sync.wire import SKU_RE, parse_ts, utc_now

log = structlog.get_logger("edge_agent.api")

SSE_KEEPALIVE_S = 15.0

IdempotencyKey = Annotated[
    str,
    Header(alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$",
           description="Unique per logical write; a retry with the same key and body returns "
                       "the original result, another body gets 409 idempotency_conflict."),
]
Terminal = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class ResyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: Annotated[FreeText, StringConstraints(min_length=1)] = "requested via API"


class ApiError(BaseModel):
    code: str = Field(description="stable machine-readable code")
    message: str = Field(description="human-readable explanation")


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found",
                 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **extra}, status_code=status)


class FastJSONResponse(JSONResponse):
    """orjson instead of json.dumps: the hot path answers every sale with one of these."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _written(result: WriteResult) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return FastJSONResponse(result.body, status_code=201, headers=headers)


class LastResort:
    """Anything no handler claimed: logged with its traceback, answered with a plain 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("api.internal_error", path=scope.get("path"))
            if scope["type"] == "http" and not started:
                await send_error(send, 500, "internal_error",
                                 "the agent could not handle this request; see its log")


def agent_error_parts(exc: EdgeAgentError) -> tuple[int, str, str]:
    """(status, code, message) of an agent error, logged when it is the agent's fault."""
    if isinstance(exc, OperationError):
        return exc.status, exc.code, str(exc)
    if isinstance(exc, FactRejected):
        return 422, "fact_rejected", str(exc)
    if isinstance(exc, DiskFull):
        log.error("api.disk_full", error=str(exc))
        return 507, "disk_full", str(exc)
    if isinstance(exc, LedgerError):
        log.error("api.ledger_unavailable", error=str(exc))
        return 503, "ledger_unavailable", str(exc)
    log.error("api.agent_error", error=str(exc), kind=type(exc).__name__)
    return 500, "internal_error", str(exc)


def validation_parts(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The 422 body: first problem as the message, every field path, never the input."""
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    card = any(CARD_DATA_MESSAGE in str(e["msg"]) for e in errors)
    if not card and any(e.get("type") == "json_invalid" for e in errors):
        return {"code": "invalid_json", "message": "the body is not valid JSON "
                f"({first['msg']})", "errors": errors}
    return {"code": "card_data_rejected" if card else "validation_error",
            "message": f"{where}: {first['msg']}", "errors": errors}


def _error_list(raw: Any, prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [{"loc": [*prefix, *e.get("loc", ())], "msg": str(e.get("msg", "")),
             "type": str(e.get("type", ""))} for e in raw]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EdgeAgentError)
    async def agent_error(_: Request, exc: EdgeAgentError) -> JSONResponse:
        status, code, message = agent_error_parts(exc)
        return _error(status, code, message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return FastJSONResponse(validation_parts(_error_list(exc.errors())), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = str(exc.detail)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint {where}; every endpoint is listed at /docs"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("allow", "")
            message = f"{request.url.path} does not take {request.method}" + \
                (f" (allowed: {allowed})" if allowed else "")
        return JSONResponse({"code": code, "message": message},
                            status_code=exc.status_code, headers=exc.headers)


_KEY_RE = re.compile(r"[\x21-\x7e]{1,128}")


@dataclasses.dataclass(frozen=True, slots=True)
class _RouteName:
    path: str


class SalesFastPath:
    """``POST /v1/sales``, the hot path, without FastAPI's per-request machinery
    (dependency solving, ``json.loads`` then validation): pydantic-core parses and
    validates the body in one pass. Same contract as the documented route, which stays in
    the OpenAPI document (and answers if this middleware is ever removed)."""

    route = _RouteName("/v1/sales")

    def __init__(self, app: ASGIApp, retail: RetailService) -> None:
        self.app = app
        self.retail = retail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/sales" \
                or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        key: str | None = None
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                key = value.decode("latin-1")
        chunks = []
        while True:  # one message when BodyLimit (outside) has buffered the body
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        errors: list[dict[str, Any]] = []
        request: SaleRequest | None = None
        try:
            request = SaleRequest.model_validate_json(b"".join(chunks))
        except ValidationError as exc:
            errors = _error_list(exc.errors(include_input=False), ("body",))
        if key is None:
            errors.insert(0, {"loc": ["header", "Idempotency-Key"], "msg": "Field required",
                              "type": "missing"})
        elif _KEY_RE.fullmatch(key) is None:
            errors.insert(0, {"loc": ["header", "Idempotency-Key"],
                              "msg": "must be 1-128 printable ASCII characters",
                              "type": "string_pattern_mismatch"})
        if errors or request is None or key is None:
            await _send_json(send, 422, validation_parts(errors))
            return
        try:
            result = await self.retail.sale(request, idempotency_key=key)
        except EdgeAgentError as exc:
            status, code, text = agent_error_parts(exc)
            await _send_json(send, status, {"code": code, "message": text})
            return
        await _send_json(send, 201, result.body,
                         [(b"idempotent-replayed", b"true")] if result.replayed else [])


async def _send_json(send: Send, status: int, content: Any,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps(content)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]})
    await send({"type": "http.response.body", "body": body})


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("edge_agent_api_requests", "API requests",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("edge_agent_api_request_seconds", "API request latency",
                                 ["route"], registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5, 1.0, 2.5))
        self.outbox_pending = Gauge("edge_agent_outbox_pending_events",
                                    "Events not yet acknowledged by central", registry=r)
        self.last_seq = Gauge("edge_agent_ledger_last_seq", "Last seq of the current epoch",
                              registry=r)
        self.db_bytes = Gauge("edge_agent_db_bytes", "Ledger database size", registry=r)
        self.wal_bytes = Gauge("edge_agent_db_wal_bytes", "Ledger WAL size", registry=r)
        self.devices = Gauge("edge_agent_devices", "Configured devices by state", ["state"],
                             registry=r)
        self.counters = Gauge("edge_agent_counter", "Agent counters (monotonic)", ["name"],
                              registry=r)
        self.uptime = Gauge("edge_agent_uptime_seconds", "Seconds since the agent started",
                            registry=r)
        self.broker = Gauge("edge_agent_broker_connected", "1 when the MQTT link is up",
                            registry=r)
        self.outbox_oldest_age = Gauge("edge_agent_outbox_oldest_age_seconds",
                                       "Age of the oldest unacknowledged event", registry=r)
        self.disk_free = Gauge("edge_agent_disk_free_bytes",
                               "Free space where the ledger lives", registry=r)
        self.sync = Gauge("edge_agent_sync", "Sync figures (events published/acknowledged, "
                          "reconnects, commands applied, go-backs, clock offset ms, ...)",
                          ["name"], registry=r)
        self.device_figures = Gauge("edge_agent_device", "Per-device counters",
                                    ["device", "figure"], registry=r)
        self.visitors = Gauge("edge_agent_visitors", "Visitors engine figures "
                              "(presence_shed, open_visits, ...)", ["name"], registry=r)


def create_app(services: AgentServices, *, retail: RetailService | None = None) -> FastAPI:
    """The API app over the daemon's shared services (one app, any number of listeners)."""
    retail = retail or RetailService(services.ledger, services.config.store,
                                     controls=services.config.controls, hub=services.hub)
    metrics = _Metrics()
    app = FastAPI(
        default_response_class=FastJSONResponse,
        title="edge-agent local API",
        docs_url=None,  # /docs is served by edge_agent.web.assets, with no CDN
        redoc_url=None,
        version=services.version,
        description="Store-side retail operations (sales, returns, stock movements, "
                    "click-and-collect), live device events and status. Every write takes an "
                    "Idempotency-Key header. Errors are JSON {code, message}.",
        responses={422: {"model": ApiError}, 409: {"model": ApiError},
                   503: {"model": ApiError}},
    )
    app.state.services = services
    app.state.retail = retail
    app.state.metrics = metrics
    _install_error_handlers(app)
    app.add_middleware(SalesFastPath, retail=retail)
    app.add_middleware(LastResort)
    app.add_middleware(BodyLimit, max_bytes=services.config.api.max_body_bytes)
    app.add_middleware(RequestMetrics, requests=metrics.requests, latency=metrics.latency,
                       routes=lambda: app.router.routes)

    # -- retail writes ------------------------------------------------------------------------
    @app.post("/v1/sales", status_code=201, tags=["retail"])
    async def post_sale(body: SaleRequest, key: IdempotencyKey) -> JSONResponse:
        """Record a sale. Lines by `sku`, `gtin` or raw `barcode`; payments must cover the
        total. Stock may go negative (an `oversold` alert is recorded with it)."""
        return _written(await retail.sale(body, idempotency_key=key))

    @app.post("/v1/returns", status_code=201, tags=["retail"])
    async def post_return(body: ReturnRequest, key: IdempotencyKey) -> JSONResponse:
        """Take goods back, against `sale_id` or (if the store allows it) without."""
        return _written(await retail.return_goods(body, idempotency_key=key))

    @app.post("/v1/receipts", status_code=201, tags=["stock"])
    async def post_receipt(body: ReceiptRequest, key: IdempotencyKey) -> JSONResponse:
        """Goods in (a delivery): stock +qty per line."""
        return _written(await retail.receipt(body, idempotency_key=key))

    @app.post("/v1/adjustments", status_code=201, tags=["stock"])
    async def post_adjustment(body: AdjustmentRequest, key: IdempotencyKey) -> JSONResponse:
        """Signed stock correction with a reason (damage, shrink, found, correction)."""
        return _written(await retail.adjustment(body, idempotency_key=key))

    @app.post("/v1/counts", status_code=201, tags=["stock"])
    async def post_count(body: CountRequest, key: IdempotencyKey) -> JSONResponse:
        """Counted quantities; the store's on-hand now is `expected`, so the fact is a delta.
        A `count_id` of central's count request closes that request."""
        return _written(await retail.count(body, idempotency_key=key))

    @app.post("/v1/transfers", status_code=201, tags=["stock"])
    async def post_transfer(body: TransferRequest, key: IdempotencyKey) -> JSONResponse:
        """Goods sent to another store: stock -qty per line."""
        return _written(await retail.transfer_out(body, idempotency_key=key))

    @app.post("/v1/fulfilments", status_code=201, tags=["click-and-collect"])
    async def post_fulfilment(body: FulfilmentRequest, key: IdempotencyKey) -> JSONResponse:
        """Hand over a reservation (all that remains when `lines` is omitted)."""
        return _written(await retail.fulfil(body, idempotency_key=key))

    # -- retail reads ----------------------------------------------------------------------------
    @app.get("/v1/sales/{sale_id}", tags=["retail"])
    async def get_sale(sale_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
        return await retail.sale_record(sale_id)

    @app.get("/v1/reservations", tags=["click-and-collect"])
    async def get_reservations(
        status: Literal["open", "fulfilled", "released"] | None = None,
    ) -> dict[str, Any]:
        return {"reservations": await retail.reservations(status)}

    @app.get("/v1/reservations/{reservation_id}", tags=["click-and-collect"])
    async def get_reservation(
        reservation_id: Annotated[str, Path(max_length=128)],
    ) -> dict[str, Any]:
        return await retail.reservation(reservation_id)

    @app.get("/v1/stock", tags=["stock"])
    async def get_stock(limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
                        after: Annotated[str, Query(max_length=64)] = "") -> dict[str, Any]:
        """Every stocked SKU (paged by SKU) and the store's totals."""
        return await retail.stock_list(limit=limit, after=after)

    @app.get("/v1/stock/low", tags=["stock"])
    async def get_low_stock(
        threshold: Annotated[int | None, Query(ge=-1_000_000, le=1_000_000)] = None,
    ) -> dict[str, Any]:
        """Items whose available quantity is at or below the threshold."""
        return await retail.low_stock(threshold)

    @app.get("/v1/stock/{sku:path}", tags=["stock"])
    async def get_stock_item(sku: str) -> dict[str, Any]:
        """On hand, reserved and available (on hand - reserved) of one SKU."""
        return await retail.stock_item(_sku(sku))

    @app.get("/v1/movements", tags=["stock"])
    async def get_movements(sku: Annotated[str, Query(pattern=r"^[A-Za-z0-9._:/-]{1,64}$")],
                            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """The ledger events that moved a SKU, newest first (while they are retained)."""
        return await retail.movements(sku, limit=limit)

    @app.get("/v1/catalog/lookup", tags=["catalog"])
    async def get_lookup(code: Annotated[str, Query(min_length=1, max_length=512)]
                         ) -> dict[str, Any]:
        """Resolve a SKU, GTIN, alias or raw barcode to its item, price and stock."""
        return await retail.lookup(code)

    # -- baskets ----------------------------------------------------------------------------------
    @app.get("/v1/baskets/{terminal}", tags=["baskets"])
    async def get_basket(terminal: Terminal) -> dict[str, Any]:
        basket = await retail.basket(terminal)
        if basket is None:
            raise OperationError("basket_empty", f"terminal {terminal} has no open basket",
                                 status=404)
        return basket

    @app.post("/v1/baskets/{terminal}/items", status_code=201, tags=["baskets"])
    async def post_basket_item(terminal: Terminal, body: BasketItemIn) -> dict[str, Any]:
        """Add an item (by scanned `code` or `sku`) to the terminal's basket."""
        return await retail.basket_add(terminal, code=body.code, sku=body.sku, qty=body.qty)

    @app.delete("/v1/baskets/{terminal}/items/{line_no}", tags=["baskets"])
    async def delete_basket_item(terminal: Terminal,
                                 line_no: Annotated[int, Path(ge=1)]) -> dict[str, Any]:
        return await retail.basket_void(terminal, line_no)

    @app.delete("/v1/baskets/{terminal}", tags=["baskets"])
    async def delete_basket(terminal: Terminal) -> dict[str, Any]:
        if not await retail.basket_cancel(terminal):
            raise OperationError("basket_empty", f"terminal {terminal} has no open basket",
                                 status=404)
        return {"terminal": terminal, "cancelled": True}

    @app.post("/v1/baskets/{terminal}/checkout", status_code=201, tags=["baskets"])
    async def post_checkout(terminal: Terminal, key: IdempotencyKey,
                            body: CheckoutRequest | None = None) -> JSONResponse:
        """Sell the basket (one `sale` fact). Without payments, the configured default
        method pays the total."""
        return _written(await retail.basket_checkout(terminal, body, idempotency_key=key))

    # -- receiving / count sessions ---------------------------------------------------------------
    @app.get("/v1/sessions", tags=["sessions"])
    async def get_sessions(
        status: Literal["open", "closed", "cancelled", "all"] = "open",
    ) -> dict[str, Any]:
        return {"sessions": await retail.sessions(None if status == "all" else status)}

    @app.post("/v1/sessions", status_code=201, tags=["sessions"])
    async def post_session(body: SessionOpenRequest) -> dict[str, Any]:
        """Open (or get the open) receiving or count session of a terminal."""
        return await retail.session_open(body.kind, body.terminal, ref=body.ref,
                                         count_id=body.count_id)

    @app.get("/v1/sessions/{session_id}", tags=["sessions"])
    async def get_session(session_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
        return await retail.session(session_id)

    @app.post("/v1/sessions/{session_id}/items", status_code=201, tags=["sessions"])
    async def post_session_item(session_id: Annotated[str, Path(max_length=64)],
                                body: SessionScanIn) -> dict[str, Any]:
        session = await retail.session(session_id)
        return await retail.session_add(session["kind"], session["terminal"], code=body.code,
                                        sku=body.sku, qty=body.qty, session_id=session_id)

    @app.post("/v1/sessions/{session_id}/close", status_code=201, tags=["sessions"])
    async def post_session_close(session_id: Annotated[str, Path(max_length=64)],
                                 key: IdempotencyKey) -> JSONResponse:
        """Close into one `receipt` (receiving) or `count` fact."""
        return _written(await retail.session_close(session_id, idempotency_key=key))

    @app.delete("/v1/sessions/{session_id}", tags=["sessions"])
    async def delete_session(session_id: Annotated[str, Path(max_length=64)]
                             ) -> dict[str, Any]:
        return await retail.session_cancel(session_id)

    # -- live events ------------------------------------------------------------------------------
    @app.get("/v1/events/stream", tags=["events"],
             response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def get_events(
        topics: Annotated[str | None, Query(max_length=200,
                                            description="comma-separated, e.g. scan,tag,device"
                                            )] = None,
    ) -> StreamingResponse:
        """Server-sent events: `event: <topic>` and `data: <json>` per item; a comment
        line every 15 s keeps proxies and clients from timing out. Topics: scan,
        scan_rejected, basket, session, lookup, device, tag, door, presence, rejected, and
        one per committed write (sale, checkout, return, receipt, adjustment, count,
        transfer, fulfilment, session.close: ids, totals, units, alert kinds) ...
        (all when `topics` is omitted)."""
        wanted = {t.strip() for t in topics.split(",") if t.strip()} if topics else None
        return StreamingResponse(_sse(services, wanted), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    # Visitors and footfall (edge_agent.visitors reads app.state.services).
    app.include_router(visitors_router)
    app.include_router(recalls_router)
    app.include_router(rfid_router)  # RFID counts and accuracy (edge_agent.rfid)
    app.include_router(customers_router)
    # The store page (dashboard, login, charts) and the self-hosted Swagger UI at /docs.
    app.include_router(pages_router)
    app.include_router(orders_router)  # the fulfilment queue (edge_agent.orders)

    # -- status and ops ---------------------------------------------------------------------------
    @app.get("/v1/status", tags=["ops"])
    async def get_status() -> dict[str, Any]:
        return await _status(services)

    @app.get("/v1/devices", tags=["ops"])
    async def get_devices() -> dict[str, Any]:
        return _devices(services)

    @app.get("/v1/outbox", tags=["ops"])
    async def get_outbox(limit: Annotated[int, Query(ge=0, le=1000)] = 20) -> dict[str, Any]:
        return await _outbox(services, limit)

    @app.post("/v1/sync/now", status_code=202, tags=["ops"])
    async def post_sync_now() -> dict[str, Any]:
        sync = _sync(services)
        sync.request_sync_now()
        return {"requested": "sync_now"}

    @app.post("/v1/sync/resync", status_code=202, tags=["ops"])
    async def post_resync(body: ResyncRequest | None = None) -> dict[str, Any]:
        sync = _sync(services)
        reason = body.reason if body is not None else "requested via API"
        sync.request_resync(reason)
        return {"requested": "resync", "reason": reason}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def get_metrics() -> Response:
        await _refresh_metrics(services, metrics)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _sku(text: str) -> str:
    if SKU_RE.fullmatch(text) is None:
        raise OperationError("invalid_sku", "a SKU is 1-64 of [A-Za-z0-9._:/-]", status=422)
    return text


def _sync(services: AgentServices) -> SyncControl:
    if services.sync is None:
        raise OperationError("sync_not_configured", "sync with central is not running on "
                             "this agent", status=503)
    return services.sync


async def _sse(services: AgentServices, topics: set[str] | None) -> AsyncIterator[bytes]:
    async with services.hub.subscribe(topics) as queue:
        yield b": connected\n\n"
        while True:
            try:
                topic, data = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            body = orjson.dumps(data, default=str)
            yield b"event: " + topic.encode() + b"\ndata: " + body + b"\n\n"


def _devices(services: AgentServices) -> dict[str, Any]:
    items = [dataclasses.asdict(status) for status in services.device_statuses.values()]
    return {"connected": sum(1 for i in items if i["state"] == "connected"),
            "total": max(len(items), len(services.config.devices)), "items": items}


def _resync_needed(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key = 'resync_needed'").fetchone()
    return row is not None and str(row[0]) == "1"


async def _status(services: AgentServices) -> dict[str, Any]:
    ledger = services.ledger
    stats = await ledger.stats()
    resync = await ledger.read(_resync_needed)
    figures: dict[str, Any] = {}
    if services.sync is not None:
        figures = services.sync.figures()
    oldest_age = None
    if stats.outbox_oldest_ts is not None:
        try:
            oldest_age = max(0.0, round((utc_now() - parse_ts(stats.outbox_oldest_ts))
                                        .total_seconds(), 3))
        except WireFormatError:
            oldest_age = None
    try:
        free = shutil.disk_usage(ledger.path.parent).free
    except OSError:
        free = None
    return {
        "state": services.state,
        "version": services.version,
        "store": services.config.store.id,
        "uptime_s": services.uptime_s,
        "boot_id": services.boot_id,
        "epoch": stats.epoch,
        "last_seq": stats.last_seq,
        "applied_cseq": stats.applied_cseq,
        "resync_needed": resync,
        "broker": {
            "connected": bool(services.sync.connected) if services.sync is not None else False,
            "last_ack_at": figures.get("last_ack_at"),
            "reconnects": figures.get("reconnects", 0),
            "stalled_s": figures.get("stalled_s", 0.0),
            "last_error": figures.get("last_error"),
        },
        "outbox": {"pending": stats.outbox_pending, "oldest_ts": stats.outbox_oldest_ts,
                   "oldest_age_s": oldest_age},
        "devices": _devices(services),
        "clock_offset_ms": figures.get("clock_offset_ms"),
        "db": {"bytes": stats.db_bytes, "wal_bytes": stats.wal_bytes, "disk_free_bytes": free},
        "counters": dict(services.counters),
    }


def _pending_events(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for info in read_epochs(conn):
        if info.last_seq <= info.acked_seq or len(out) >= limit:
            continue
        rows = conn.execute(
            "SELECT seq, event_id, type, ts, length(payload) FROM events "
            "WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            (event_key(info.ordinal, info.acked_seq), event_key(info.ordinal, info.last_seq),
             limit - len(out)),
        )
        out.extend({"epoch": info.epoch, "seq": int(r[0]), "id": r[1], "type": r[2],
                    "ts": r[3], "bytes": int(r[4])} for r in rows)
    return out


def _epoch_marks(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each epoch's watermarks: last seq recorded, acknowledged by central, pending."""
    return [{"epoch": e.epoch, "last_seq": e.last_seq, "acked_seq": e.acked_seq,
             "pending": max(0, e.last_seq - e.acked_seq)} for e in read_epochs(conn)]


async def _outbox(services: AgentServices, limit: int) -> dict[str, Any]:
    stats = await services.ledger.stats()
    events = await services.ledger.read(lambda conn: _pending_events(conn, limit))
    epochs = await services.ledger.read(_epoch_marks)
    return {"pending": stats.outbox_pending, "oldest_ts": stats.outbox_oldest_ts,
            "epochs": epochs, "events": events}


async def _refresh_metrics(services: AgentServices, metrics: _Metrics) -> None:
    try:
        stats = await services.ledger.stats()
    except EdgeAgentError:
        stats = None
    if stats is not None:
        metrics.outbox_pending.set(stats.outbox_pending)
        metrics.last_seq.set(stats.last_seq)
        metrics.db_bytes.set(stats.db_bytes)
        metrics.wal_bytes.set(stats.wal_bytes)
    states: dict[str, int] = {"connected": 0, "disconnected": 0, "error": 0}
    for status in services.device_statuses.values():
        states[status.state] = states.get(status.state, 0) + 1
    for state, count in states.items():
        metrics.devices.labels(state).set(count)
    for name, value in services.counters.items():
        metrics.counters.labels(name).set(value)
    metrics.uptime.set(time.monotonic() - services.started_monotonic)
    metrics.broker.set(1 if services.sync is not None and services.sync.connected else 0)
    if stats is not None:
        metrics.outbox_oldest_age.set(_age_s(stats.outbox_oldest_ts))
    with contextlib.suppress(OSError):
        metrics.disk_free.set(shutil.disk_usage(services.ledger.path.parent).free)
    if services.sync is not None:
        _numeric(metrics.sync, services.sync.figures())
    for status in services.device_statuses.values():
        for figure in ("reads", "frames_rejected", "reconnects", "card_data_rejected"):
            metrics.device_figures.labels(status.name, figure).set(getattr(status, figure))
    engine = services.extras.get("visitors")
    figures = getattr(engine, "figures", None)
    if callable(figures):
        _numeric(metrics.visitors, figures())


def _numeric(gauge: Gauge, figures: dict[str, Any]) -> None:
    """Every int/float figure (bools as 0/1) under its name; other values are skipped."""
    for name, value in figures.items():
        if isinstance(value, bool | int | float):
            gauge.labels(name).set(float(value))


def _age_s(ts: str | None) -> float:
    if ts is None:
        return 0.0
    try:
        return max(0.0, (utc_now() - parse_ts(ts)).total_seconds())
    except ValueError:
        return 0.0
