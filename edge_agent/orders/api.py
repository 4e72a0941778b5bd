"""HTTP routes under ``/v1/orders``: the store's fulfilment queue for a clerk's screen.

Every write takes an ``Idempotency-Key`` and answers 201 with the order as it now is and
the ``event`` its step recorded; refusals are JSON ``{code, message}`` (409 for a step the
order's state does not allow, ``pick_wrong_item`` / ``pick_exceeds_order`` for a bad scan,
403 ``pickup_code_wrong``). The service is ``request.app.state.orders`` (made on first use).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edge_agent.api.params import IdempotencyKey
from edge_agent.orders.machine import STATUSES
from edge_agent.orders.service import OrderService
from edge_agent.retail.idempotency import WriteResult
from edge_agent.retail.requests import FreeText
from edge_agent.services import AgentServices

router = APIRouter(prefix="/v1/orders", tags=["orders"])
STATUS_PATTERN = f"^({'|'.join(('open', 'all', *STATUSES))})$"

OrderId = Annotated[str, Path(pattern=r"^[\x21-\x7e]{1,128}$")]
Clerk = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                         pattern=r"^[A-Za-z0-9_.@-]+$")]


def get_orders(request: Request) -> OrderService:
    """The app's order service, made on first use from the agent's services."""
    state = request.app.state
    service: OrderService | None = getattr(state, "orders", None)
    if service is None:
        services: AgentServices = state.services
        service = state.orders = OrderService(services.ledger, services.config.store,
                                              hub=services.hub)
    return service


Orders = Annotated[OrderService, Depends(get_orders)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AcceptIn(_Body):
    by: Clerk | None = Field(default=None, description="the clerk who takes the order")


class RejectIn(_Body):
    reason: Literal["not_found", "damaged", "no_staff", "other"]
    note: Annotated[FreeText, StringConstraints(max_length=200)] | None = None


class PickIn(_Body):
    code: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="the scanned code, as a till scan reads it (GTIN, GS1, SKU, alias)")
    qty: Annotated[int, Field(gt=0, le=9999)] | None = Field(
        default=None, description="units in this scan (default: the barcode's, else 1)")


class PackIn(_Body):
    parcels: Annotated[int, Field(gt=0, le=999)] | None = None


class CollectIn(_Body):
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="the customer's pickup code (required when central sent "
                                  "a pickup_code_hash)")


class ShipIn(_Body):
    tracking: Annotated[FreeText, StringConstraints(min_length=1, max_length=128)] | None = None


def _written(result: WriteResult) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return JSONResponse(result.body, status_code=201, headers=headers)


@router.get("")
async def list_orders(
    orders: Orders,
    status: Annotated[str, Query(pattern=STATUS_PATTERN,
                                 description="open (default), all, or one state")] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """The queue, oldest first: orders central assigned to this store."""
    items = await orders.orders(status, limit)
    return {"status": status, "count": len(items), "orders": items}


@router.get("/{order_id}")
async def get_order(orders: Orders, order_id: OrderId) -> dict[str, Any]:
    """One order: lines with what is picked, its state and history."""
    return await orders.order(order_id)


@router.post("/{order_id}/accept", status_code=201)
async def accept(orders: Orders, order_id: OrderId, key: IdempotencyKey,
                 body: AcceptIn | None = None) -> JSONResponse:
    """Take an incoming order (an ``order.accepted`` fact). Allowed after ``accept_by``:
    central decides whether it still stands."""
    body = body or AcceptIn()
    return _written(await orders.accept(order_id, by=body.by, idempotency_key=key))


@router.post("/{order_id}/reject", status_code=201)
async def reject(orders: Orders, order_id: OrderId, key: IdempotencyKey,
                 body: RejectIn) -> JSONResponse:
    """Give an order back before the handover (``order.rejected``, releasing what its
    reservation still holds); central re-brokers it."""
    return _written(await orders.reject(order_id, body.reason, note=body.note,
                                        idempotency_key=key))


@router.post("/{order_id}/pick", status_code=201)
async def pick(orders: Orders, order_id: OrderId, key: IdempotencyKey,
               body: PickIn) -> JSONResponse:
    """One picking scan; the scan that completes the order records ``order.picked``."""
    return _written(await orders.pick(order_id, body.code, qty=body.qty, idempotency_key=key))


@router.post("/{order_id}/pack", status_code=201)
async def pack(orders: Orders, order_id: OrderId, key: IdempotencyKey,
               body: PackIn | None = None) -> JSONResponse:
    body = body or PackIn()
    return _written(await orders.pack(order_id, parcels=body.parcels, idempotency_key=key))


@router.post("/{order_id}/ready", status_code=201)
async def ready(orders: Orders, order_id: OrderId, key: IdempotencyKey) -> JSONResponse:
    """Ready for the customer (pickup) or the carrier (ship): ``order.ready``."""
    return _written(await orders.ready(order_id, idempotency_key=key))


@router.post("/{order_id}/collect", status_code=201)
async def collect(orders: Orders, order_id: OrderId, key: IdempotencyKey,
                  body: CollectIn | None = None) -> JSONResponse:
    """The customer collects: a ``fulfilment`` fact (how ``collected``), stock and
    reservation both go down."""
    body = body or CollectIn()
    return _written(await orders.collect(order_id, code=body.code, idempotency_key=key))


@router.post("/{order_id}/ship", status_code=201)
async def ship(orders: Orders, order_id: OrderId, key: IdempotencyKey,
               body: ShipIn | None = None) -> JSONResponse:
    """Handed to the carrier: a ``fulfilment`` fact (how ``shipped``) with the tracking."""
    body = body or ShipIn()
    return _written(await orders.ship(order_id, tracking=body.tracking, idempotency_key=key))
