"""Routes of the store's retail facts: sales, returns, goods in, stock corrections,
counts, transfers, hand-overs, and the reads of sales, reservations, stock and catalog.

Every write takes an ``Idempotency-Key`` and answers 201 with the recorded fact
(``Idempotent-Replayed: true`` on a retry). ``POST /v1/sales`` is answered by
:class:`edge_agent.api.fast_path.SalesFastPath`; its route here documents it (and answers
if that middleware is ever removed).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from edge_agent.api.errors import FastJSONResponse
from edge_agent.api.params import IdempotencyKey, Retail
from edge_agent.errors import OperationError
from edge_agent.retail import WriteResult
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


def written(result: WriteResult) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return FastJSONResponse(result.body, status_code=201, headers=headers)


# -- retail writes ------------------------------------------------------------------------
@router.post("/v1/sales", status_code=201, tags=["retail"])
async def post_sale(retail: Retail, body: SaleRequest, key: IdempotencyKey) -> JSONResponse:
    """Record a sale. Lines by `sku`, `gtin` or raw `barcode`; payments must cover the
    total. Stock may go negative (an `oversold` alert is recorded with it)."""
    return written(await retail.sale(body, idempotency_key=key))


@router.post("/v1/returns", status_code=201, tags=["retail"])
async def post_return(retail: Retail, body: ReturnRequest, key: IdempotencyKey) -> JSONResponse:
    """Take goods back, against `sale_id` or (if the store allows it) without."""
    return written(await retail.return_goods(body, idempotency_key=key))


@router.post("/v1/receipts", status_code=201, tags=["stock"])
async def post_receipt(retail: Retail, body: ReceiptRequest, key: IdempotencyKey) -> JSONResponse:
    """Goods in (a delivery): stock +qty per line."""
    return written(await retail.receipt(body, idempotency_key=key))


@router.post("/v1/adjustments", status_code=201, tags=["stock"])
async def post_adjustment(retail: Retail,
                          body: AdjustmentRequest, key: IdempotencyKey) -> JSONResponse:
    """Signed stock correction with a reason (damage, shrink, found, correction)."""
    return written(await retail.adjustment(body, idempotency_key=key))


@router.post("/v1/counts", status_code=201, tags=["stock"])
async def post_count(retail: Retail, body: CountRequest, key: IdempotencyKey) -> JSONResponse:
    """Counted quantities; the store's on-hand now is `expected`, so the fact is a delta.
    A `count_id` of central's count request closes that request."""
    return written(await retail.count(body, idempotency_key=key))


@router.post("/v1/transfers", status_code=201, tags=["stock"])
async def post_transfer(retail: Retail, body: TransferRequest, key: IdempotencyKey) -> JSONResponse:
    """Goods sent to another store: stock -qty per line."""
    return written(await retail.transfer_out(body, idempotency_key=key))


@router.post("/v1/fulfilments", status_code=201, tags=["click-and-collect"])
async def post_fulfilment(retail: Retail,
                          body: FulfilmentRequest, key: IdempotencyKey) -> JSONResponse:
    """Hand over a reservation (all that remains when `lines` is omitted)."""
    return written(await retail.fulfil(body, idempotency_key=key))


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


