"""HTTP routes of the omnichannel loop: ATP (``/v1/atp``, its changes feed), orders
(``/v1/orders``) and the stores' brokering attributes (``/v1/omni/stores``).

Every route takes the operator token (a shop's integration holds one). Errors are JSON
``{"code": stable_code, "message": text}``. Reads use their own connection and one
consistent read; writes go to the single writer (``service.call``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.params import Depends
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from central.errors import InvalidCommandError, OrderError, OrderFenced
from central.fencing import Fenced
from central.omni_config import StoreAttrs
from central.omni_state import CursorExpired
from central.orders import OmniEngine, request_sha
from central.orders_db import list_orders, order_detail, order_row
from sync.wire import SKU_RE, STORE_RE

if TYPE_CHECKING:
    from central.core import Core, Publish
    from central.hooks import Tx
    from central.service import CentralService

MAX_SKUS = 500
STREAM_POLL_S = 0.5
STREAM_KEEPALIVE_S = 15.0
_ID = r"^[A-Za-z0-9._:-]{1,64}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class OrderLineIn(_In):
    line_no: int | None = Field(default=None, ge=1, le=10_000)
    sku: str = Field(pattern=SKU_RE.pattern)
    qty: int = Field(ge=1, le=100_000)


class ShipToIn(_In):
    postcode: str | None = Field(default=None, pattern=r"^[A-Za-z0-9 -]{1,16}$")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class OrderIn(_In):
    order_id: str = Field(pattern=_ID)
    channel: str = Field(pattern=r"^[A-Za-z0-9._-]{1,32}$")
    lines: list[OrderLineIn] = Field(min_length=1, max_length=200)
    fulfilment: Literal["pickup", "ship"]
    pickup_store: str | None = Field(default=None, pattern=STORE_RE.pattern)
    ship_to: ShipToIn | None = None
    customer_ref: str | None = Field(default=None, pattern=_ID)
    pickup_code_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    may_split: bool = False

    @model_validator(mode="after")
    def _fulfilment(self) -> OrderIn:
        if self.fulfilment == "pickup" and self.pickup_store is None:
            raise ValueError("a pickup order needs pickup_store")
        if self.fulfilment == "ship":
            ship = self.ship_to
            if ship is None or (ship.postcode is None and (ship.lat is None or ship.lon is None)):
                raise ValueError("a ship order needs ship_to with lat and lon, or a postcode")
        numbers = [ln.line_no for ln in self.lines if ln.line_no is not None]
        if len(set(numbers)) != len(numbers):
            raise ValueError("line_no must be unique")
        return self

    def normalized(self) -> dict[str, Any]:
        lines = [{"line_no": ln.line_no or index, "sku": ln.sku, "qty": ln.qty}
                 for index, ln in enumerate(self.lines, start=1)]
        out = self.model_dump(mode="json", exclude_none=True)
        out["lines"] = lines
        return out


class CancelIn(_In):
    reason: Literal["customer", "operator"] = "customer"


def error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"code": code, "message": message}, status_code=status)


B = TypeVar("B", bound=BaseModel)


def _body(raw: bytes, model: type[B]) -> B | Response:
    try:
        return model.model_validate(orjson.loads(raw or b"{}"))
    except orjson.JSONDecodeError:
        return error(400, "invalid_json", "the body is not JSON")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return error(422, "validation_error", f"{where}: {first['msg']}")


def omni_router(service: CentralService, admin: list[Depends]) -> APIRouter:
    router = APIRouter(dependencies=admin, tags=["omnichannel"])
    db = service.db
    engine: OmniEngine | None = service.omni
    state = engine.state if engine is not None else None

    async def engine_body(request: Request, model: type[B]) -> tuple[OmniEngine, B] | Response:
        """The running engine and the request's body as ``model``, or the error answer."""
        body = _body(await request.body(), model)
        if isinstance(body, Response):
            return body
        if engine is None:
            return error(503, "omni_disabled", "the omnichannel engine is not running")
        return engine, body

    def write(fn: Any) -> Any:
        def job(core: Core) -> tuple[Any, list[Publish]]:
            try:
                result, out = core.run_write(fn)
            except Fenced as exc:  # central.fencing: rolled back, nothing sent
                raise OrderFenced(f"{exc}; rolled back: retry, or ask the store's owner") from exc
            return result, out
        return service.call(job)

    async def write_or_error(fn: Any) -> Any:
        """Run ``fn`` on the writer; an order error becomes its JSON error body."""
        try:
            return await asyncio.to_thread(write, fn)
        except OrderError as exc:
            return error(exc.status, exc.code, str(exc))

    @router.get("/v1/atp")
    def get_atp(sku: Annotated[list[str] | None, Query()] = None,
                store: Annotated[list[str] | None, Query()] = None,
                detail: bool = False) -> Any:
        if state is None:
            return error(503, "omni_disabled", "the omnichannel engine is not running")
        skus = list(dict.fromkeys(sku or []))
        if not skus:
            return error(400, "sku_required", "give at least one sku=")
        if len(skus) > MAX_SKUS:
            return error(400, "too_many_skus", f"at most {MAX_SKUS} SKUs per query")
        bad = [s for s in skus if SKU_RE.fullmatch(s) is None]
        if bad:
            return error(422, "invalid_sku", f"{bad[0]!r} is not a valid SKU")
        if store and any(STORE_RE.fullmatch(s) is None for s in store):
            return error(422, "invalid_store", "a store= value is not a valid store id")
        with db.reading() as conn:
            items = state.read_atp(conn, skus, set(store) if store else None, detail)
        return {"cursor": state.token(), "skus": items}

    @router.get("/v1/atp/changes")
    def get_changes(since: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=MAX_SKUS)] = MAX_SKUS) -> Any:
        if state is None:
            return error(503, "omni_disabled", "the omnichannel engine is not running")
        if since is None:
            return {"cursor": state.token(), "skus": [], "stores": [], "reset": True}
        try:
            skus, stores, everything, cursor = state.changes(since, limit)
        except CursorExpired:
            return error(410, "cursor_expired",
                         "unknown or expired cursor: read /v1/atp again and restart from "
                         "the cursor it returns")
        items: list[dict[str, Any]] = []
        if skus:
            with db.reading() as conn:
                items = state.read_atp(conn, skus, None, detail=False)
        return {"cursor": cursor, "skus": items, "stores": stores, "reset": everything}

    @router.get("/v1/atp/stream", response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}}}})
    async def get_stream(since: str | None = None) -> Any:
        """Server-sent events: ``event: atp`` with the body of ``/v1/atp/changes`` each
        time something changed (checked every 0.5 s), ``event: reset`` when the cursor
        expired (read the ATP again), a comment line every 15 s to keep proxies open."""
        if state is None:
            return error(503, "omni_disabled", "the omnichannel engine is not running")
        return StreamingResponse(_stream(since or state.token()),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def _stream(cursor: str) -> AsyncIterator[bytes]:
        assert state is not None  # noqa: S101 - checked by the route
        yield b": connected\n\n"
        quiet = 0.0
        while not state.closing.is_set():
            try:
                skus, stores, everything, cursor = state.changes(cursor, MAX_SKUS)
            except CursorExpired:
                cursor = state.token()
                yield b"event: reset\ndata: " + orjson.dumps({"cursor": cursor}) + b"\n\n"
                continue
            if skus or stores or everything:
                items = await asyncio.to_thread(_read, skus) if skus else []
                body = {"cursor": cursor, "skus": items, "stores": stores,
                        "reset": everything}
                yield b"event: atp\ndata: " + orjson.dumps(body) + b"\n\n"
                quiet = 0.0
                continue
            await asyncio.sleep(STREAM_POLL_S)
            quiet += STREAM_POLL_S
            if quiet >= STREAM_KEEPALIVE_S:
                quiet = 0.0
                yield b": keep-alive\n\n"

    def _read(skus: list[str]) -> list[dict[str, Any]]:
        assert state is not None  # noqa: S101 - checked by the route
        with db.reading() as conn:
            return state.read_atp(conn, skus, None, detail=False)

    @router.post("/v1/orders")
    async def post_order(request: Request) -> Any:
        parsed = await engine_body(request, OrderIn)
        if isinstance(parsed, Response):
            return parsed
        omni, body = parsed
        normalized = body.normalized()
        with db.reading() as conn:  # a repeat or a conflict needs no write
            existing = order_row(conn, normalized["order_id"])
        if existing is not None:
            if existing.pop("sha") != request_sha(normalized):
                return error(409, "order_conflict",
                             f"order {normalized['order_id']} exists with a different request")
            return JSONResponse(existing, status_code=200)

        def submit(tx: Tx) -> tuple[dict[str, Any], bool]:
            return omni.submit(tx, normalized)

        try:
            order, created = await asyncio.to_thread(write, submit)
        except OrderError as exc:
            return error(exc.status, exc.code, str(exc))
        except InvalidCommandError as exc:
            return error(422, "order_invalid", str(exc))
        return JSONResponse(order, status_code=201 if created else 200)

    @router.get("/v1/orders")
    def get_orders(state_: Annotated[str | None, Query(alias="state")] = None,
                   limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> Any:
        with db.reading() as conn:
            return {"orders": list_orders(conn, state_, limit)}

    @router.get("/v1/orders/{order_id}")
    def get_order(order_id: str) -> Any:
        with db.reading() as conn:
            order = order_detail(conn, order_id)
        if order is None:
            return error(404, "unknown_order", f"no order {order_id}")
        return order

    @router.post("/v1/orders/{order_id}/cancel")
    async def cancel_order(order_id: str, request: Request) -> Any:
        parsed = await engine_body(request, CancelIn)
        if isinstance(parsed, Response):
            return parsed
        omni, body = parsed
        reason = body.reason

        def cancel(tx: Tx) -> dict[str, Any]:
            return omni.cancel(tx, order_id, reason)

        return await write_or_error(cancel)

    @router.get("/v1/omni/stores")
    def get_stores() -> Any:
        if state is None:
            return error(503, "omni_disabled", "the omnichannel engine is not running")
        now = state.wall()
        with state.lock:
            return {"stores": [
                {"store": s, **(state.attrs.get(s) or StoreAttrs()).model_dump(),
                 "silent_for": round(max(0.0, now - state.contact.get(s, now)), 1),
                 "orders_today": state.orders_today(s, now)}
                for s in sorted(set(state.attrs) | set(state.contact))]}

    @router.put("/v1/omni/stores/{store}")
    async def put_store(store: str, request: Request) -> Any:
        if STORE_RE.fullmatch(store) is None:
            return error(422, "invalid_store", f"{store!r} is not a valid store id")
        parsed = await engine_body(request, StoreAttrs)
        if isinstance(parsed, Response):
            return parsed
        omni, body = parsed
        attrs = StoreAttrs.model_validate(body.model_dump())

        def put(tx: Tx) -> dict[str, Any]:
            return omni.set_store(tx, store, attrs)

        return await write_or_error(put)

    return router
