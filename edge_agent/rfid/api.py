"""HTTP routes under ``/v1/rfid`` (included by ``edge_agent.api.app``): open, watch, close
and cancel RFID counts; per-SKU count accuracy. Errors are the agent's JSON
``{code, message}`` (OperationError, mapped by the app)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from edge_agent.errors import OperationError
from edge_agent.retail.requests import no_card_data
from edge_agent.rfid.engine import ENGINE_EXTRA, RfidEngine
from edge_agent.services import AgentServices

router = APIRouter(prefix="/v1/rfid", tags=["rfid"])

Zone = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"  # an Ident without "/": it is a path segment
CountId = Annotated[str, Path(pattern=ID_PATTERN)]
NewCountId = Annotated[str, StringConstraints(pattern=ID_PATTERN), AfterValidator(no_card_data)]


class CountOpenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    zones: Annotated[list[Zone], Field(min_length=1, max_length=100)] | None = None
    """Omitted: the whole store (every inventory zone)."""
    count_id: NewCountId | None = None


def get_engine(request: Request) -> RfidEngine:
    services: AgentServices = request.app.state.services
    engine = services.extras.get(ENGINE_EXTRA)
    if not isinstance(engine, RfidEngine):
        raise OperationError("rfid_not_running", "the RFID engine is not running in this "
                             "agent", status=503)
    return engine


Engine = Annotated[RfidEngine, Depends(get_engine)]


@router.post("/counts", status_code=201)
async def open_count(body: CountOpenRequest, engine: Engine) -> dict[str, Any]:
    """Open a count on `zones` (or the whole store): from now on every tag the inventory
    readers of those zones read is counted once."""
    return await engine.open_count(body.zones, body.count_id)


@router.get("/counts")
async def list_counts(engine: Engine,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
    return {"counts": await engine.list_counts(limit)}


@router.get("/counts/{count_id}")
async def show_count(count_id: CountId, engine: Engine) -> dict[str, Any]:
    """An open count's progress (reads, distinct tags per GTIN) or a closed count's result."""
    return await engine.count_view(count_id)


@router.post("/counts/{count_id}/close")
async def close_count(count_id: CountId, engine: Engine) -> dict[str, Any]:
    """Close now (the cut-off) and record one `count` line per SKU (docs: the counting
    rule). Closing a closed count again answers its recorded result."""
    return await engine.close_count(count_id)


@router.post("/counts/{count_id}/cancel")
async def cancel_count(count_id: CountId, engine: Engine) -> dict[str, Any]:
    return await engine.cancel_count(count_id)


@router.get("/accuracy")
async def accuracy(engine: Engine,
                   sku: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._:/-]{1,64}$")]
                   = None) -> dict[str, Any]:
    """Per SKU: when it was last counted by RFID and that count's variance."""
    return {"skus": await engine.accuracy(sku), "live": engine.figures()}
