"""Routes of work in progress at a till or a scanner: the terminal's basket (scan, void,
cancel, check out) and receiving or count sessions (open, scan, close into one fact)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from edge_agent.api.params import IdempotencyKey, Retail, Terminal
from edge_agent.api.responses import written
from edge_agent.errors import OperationError
from edge_agent.retail.requests import (
    BasketItemIn,
    CheckoutRequest,
    SessionOpenRequest,
    SessionScanIn,
)

router = APIRouter()


# -- baskets ----------------------------------------------------------------------------------
@router.get("/v1/baskets/{terminal}", tags=["baskets"])
async def get_basket(retail: Retail, terminal: Terminal) -> dict[str, Any]:
    basket = await retail.basket(terminal)
    if basket is None:
        raise OperationError("basket_empty", f"terminal {terminal} has no open basket",
                             status=404)
    return basket


@router.post("/v1/baskets/{terminal}/items", status_code=201, tags=["baskets"])
async def post_basket_item(retail: Retail,
                           terminal: Terminal, body: BasketItemIn) -> dict[str, Any]:
    """Add an item (by scanned `code` or `sku`) to the terminal's basket."""
    return await retail.basket_add(terminal, code=body.code, sku=body.sku, qty=body.qty)


@router.delete("/v1/baskets/{terminal}/items/{line_no}", tags=["baskets"])
async def delete_basket_item(retail: Retail, terminal: Terminal,
                             line_no: Annotated[int, Path(ge=1)]) -> dict[str, Any]:
    return await retail.basket_void(terminal, line_no)


@router.delete("/v1/baskets/{terminal}", tags=["baskets"])
async def delete_basket(retail: Retail, terminal: Terminal) -> dict[str, Any]:
    if not await retail.basket_cancel(terminal):
        raise OperationError("basket_empty", f"terminal {terminal} has no open basket",
                             status=404)
    return {"terminal": terminal, "cancelled": True}


@router.post("/v1/baskets/{terminal}/checkout", status_code=201, tags=["baskets"])
async def post_checkout(retail: Retail, terminal: Terminal, key: IdempotencyKey,
                        body: CheckoutRequest | None = None) -> JSONResponse:
    """Sell the basket (one `sale` fact). Without payments, the configured default
    method pays the total."""
    return written(await retail.basket_checkout(terminal, body, idempotency_key=key))


# -- receiving / count sessions ---------------------------------------------------------------
@router.get("/v1/sessions", tags=["sessions"])
async def get_sessions(
    retail: Retail,
    status: Literal["open", "closed", "cancelled", "all"] = "open",
) -> dict[str, Any]:
    return {"sessions": await retail.sessions(None if status == "all" else status)}


@router.post("/v1/sessions", status_code=201, tags=["sessions"])
async def post_session(retail: Retail, body: SessionOpenRequest) -> dict[str, Any]:
    """Open (or get the open) receiving or count session of a terminal."""
    return await retail.session_open(body.kind, body.terminal, ref=body.ref,
                                     count_id=body.count_id)


@router.get("/v1/sessions/{session_id}", tags=["sessions"])
async def get_session(retail: Retail,
                      session_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
    return await retail.session(session_id)


@router.post("/v1/sessions/{session_id}/items", status_code=201, tags=["sessions"])
async def post_session_item(retail: Retail, session_id: Annotated[str, Path(max_length=64)],
                            body: SessionScanIn) -> dict[str, Any]:
    session = await retail.session(session_id)
    return await retail.session_add(session["kind"], session["terminal"], code=body.code,
                                    sku=body.sku, qty=body.qty, session_id=session_id)


@router.post("/v1/sessions/{session_id}/close", status_code=201, tags=["sessions"])
async def post_session_close(retail: Retail, session_id: Annotated[str, Path(max_length=64)],
                             key: IdempotencyKey) -> JSONResponse:
    """Close into one `receipt` (receiving) or `count` fact."""
    return written(await retail.session_close(session_id, idempotency_key=key))


@router.delete("/v1/sessions/{session_id}", tags=["sessions"])
async def delete_session(retail: Retail, session_id: Annotated[str, Path(max_length=64)]
                         ) -> dict[str, Any]:
    return await retail.session_cancel(session_id)

