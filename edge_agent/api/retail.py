"""Routes of the store's retail facts: sales, returns, goods in, stock corrections,
counts, transfers, hand-overs, and the reads of sales, reservations, stock and catalog.

Every write takes an ``Idempotency-Key`` and answers 201 with the recorded fact
(``Idempotent-Replayed: true`` on a retry). ``POST /v1/sales`` is answered by
:class:`edge_agent.api.fast_path.SalesFastPath`; its route here documents it (and answers
if that middleware is ever removed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from edge_agent.api.params import IdempotencyKey, Retail
from edge_agent.api.responses import written
from edge_agent.errors import OperationError
from edge_agent.retail.requests import (
    AdjustmentRequest,
    CountRequest,
    FulfilmentRequest,
    ReceiptRequest,
    ReturnRequest,
    SaleRequest,
    TransferRequest,
)
from sync.wire import SKU_RE

router = APIRouter()


# -- retail writes ------------------------------------------------------------------------
# (name, path, tag, request model, RetailService method, the route's description)
_WRITES: tuple[tuple[str, str, str, type[BaseModel], str, str], ...] = (
    ("post_sale", "/v1/sales", "retail", SaleRequest, "sale",
     """Record a sale. Lines by `sku`, `gtin` or raw `barcode`; payments must cover the
    total. Stock may go negative (an `oversold` alert is recorded with it)."""),
    ("post_return", "/v1/returns", "retail", ReturnRequest, "return_goods",
     """Take goods back, against `sale_id` or (if the store allows it) without."""),
    ("post_receipt", "/v1/receipts", "stock", ReceiptRequest, "receipt",
     """Goods in (a delivery): stock +qty per line."""),
    ("post_adjustment", "/v1/adjustments", "stock", AdjustmentRequest, "adjustment",
     """Signed stock correction with a reason (damage, shrink, found, correction)."""),
    ("post_count", "/v1/counts", "stock", CountRequest, "count",
     """Counted quantities; the store's on-hand now is `expected`, so the fact is a delta.
    A `count_id` of central's count request closes that request."""),
    ("post_transfer", "/v1/transfers", "stock", TransferRequest, "transfer_out",
     """Goods sent to another store: stock -qty per line."""),
    ("post_fulfilment", "/v1/fulfilments", "click-and-collect", FulfilmentRequest, "fulfil",
     """Hand over a reservation (all that remains when `lines` is omitted)."""),
)


def _write_route(name: str, model: type[BaseModel], method: str, doc: str
                 ) -> Callable[..., Awaitable[JSONResponse]]:
    """The endpoint of one write: ``model`` as the body, the service's ``method`` does it."""
    async def endpoint(retail: Retail, body: BaseModel, key: IdempotencyKey) -> JSONResponse:
        return written(await getattr(retail, method)(body, idempotency_key=key))

    endpoint.__annotations__ = {**endpoint.__annotations__, "body": model}  # FastAPI reads it
    endpoint.__name__ = endpoint.__qualname__ = name
    endpoint.__doc__ = doc
    return endpoint


for _name, _path, _tag, _model, _method, _doc in _WRITES:
    router.add_api_route(_path, _write_route(_name, _model, _method, _doc), methods=["POST"],
                         status_code=201, tags=[_tag], name=_name)


# -- retail reads ----------------------------------------------------------------------------
@router.get("/v1/sales/{sale_id}", tags=["retail"])
async def get_sale(retail: Retail, sale_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
    return await retail.sale_record(sale_id)


@router.get("/v1/reservations", tags=["click-and-collect"])
async def get_reservations(
    retail: Retail,
    status: Literal["open", "fulfilled", "released"] | None = None,
) -> dict[str, Any]:
    return {"reservations": await retail.reservations(status)}


@router.get("/v1/reservations/{reservation_id}", tags=["click-and-collect"])
async def get_reservation(
    retail: Retail,
    reservation_id: Annotated[str, Path(max_length=128)],
) -> dict[str, Any]:
    return await retail.reservation(reservation_id)


@router.get("/v1/stock", tags=["stock"])
async def get_stock(retail: Retail, limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
                    after: Annotated[str, Query(max_length=64)] = "") -> dict[str, Any]:
    """Every stocked SKU (paged by SKU) and the store's totals."""
    return await retail.stock_list(limit=limit, after=after)


@router.get("/v1/stock/low", tags=["stock"])
async def get_low_stock(
    retail: Retail,
    threshold: Annotated[int | None, Query(ge=-1_000_000, le=1_000_000)] = None,
) -> dict[str, Any]:
    """Items whose available quantity is at or below the threshold."""
    return await retail.low_stock(threshold)


@router.get("/v1/stock/{sku:path}", tags=["stock"])
async def get_stock_item(retail: Retail, sku: str) -> dict[str, Any]:
    """On hand, reserved and available (on hand - reserved) of one SKU."""
    return await retail.stock_item(_sku(sku))


@router.get("/v1/movements", tags=["stock"])
async def get_movements(retail: Retail,
                        sku: Annotated[str, Query(pattern=r"^[A-Za-z0-9._:/-]{1,64}$")],
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """The ledger events that moved a SKU, newest first (while they are retained)."""
    return await retail.movements(sku, limit=limit)


@router.get("/v1/catalog/lookup", tags=["catalog"])
async def get_lookup(retail: Retail, code: Annotated[str, Query(min_length=1, max_length=512)]
                     ) -> dict[str, Any]:
    """Resolve a SKU, GTIN, alias or raw barcode to its item, price and stock."""
    return await retail.lookup(code)


def _sku(text: str) -> str:
    if SKU_RE.fullmatch(text) is None:
        raise OperationError("invalid_sku", "a SKU is 1-64 of [A-Za-z0-9._:/-]", status=422)
    return text


