"""HTTP routes under ``/v1/customers``: the till's lookup by phone, loyalty card or tag.

The typed identifier lives only in this request's memory: it is a ``SecretStr`` (never in
a repr, a log line or a validation error), normalised, hashed under the chain's pepper(s)
and dropped. Nothing of it is stored, logged or published on the event hub.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from edge_agent.customers import cache
from edge_agent.errors import OperationError
from edge_agent.services import AgentServices
from sync.customer_ids import IdentifierError, normalise
from sync.errors import WireFormatError
from sync.wire import parse_ts

router = APIRouter(prefix="/v1/customers", tags=["customers"])


def get_services(request: Request) -> AgentServices:
    services: AgentServices = request.app.state.services
    return services


Services = Annotated[AgentServices, Depends(get_services)]
Typed = Annotated[SecretStr, Field(min_length=1, max_length=64)]


class LookupIn(BaseModel):
    """Exactly one of ``phone`` (any format; national numbers use ``store.country``),
    ``card`` (a loyalty card barcode) or ``tag`` (a loyalty tag read)."""

    model_config = ConfigDict(extra="forbid")
    phone: Typed | None = None
    card: Typed | None = None
    tag: Typed | None = None

    @model_validator(mode="after")
    def _one(self) -> LookupIn:
        if sum(x is not None for x in (self.phone, self.card, self.tag)) != 1:
            raise ValueError("give exactly one of phone, card or tag")
        return self

    def identifier(self) -> tuple[str, SecretStr]:
        for kind in ("phone", "card", "tag"):
            value = getattr(self, kind)
            if value is not None:
                return kind, value
        raise AssertionError("unreachable: validated")  # pragma: no cover


def _answer(found: cache.Found, kind: str, now: float) -> dict[str, Any]:
    profile = found.profile
    as_of = profile.get("as_of")
    try:
        age: int | None = max(0, int(now - parse_ts(str(as_of)).timestamp()))
    except WireFormatError:
        age = None
    customer = {key: profile.get(key) for key in (
        "ref", "name", "consent", "loyalty", "open_orders", "reservations", "wishlist",
        "recently_viewed", "value")}
    return {"found": True, "matched_by": kind, "customer": customer,
            "context": {"as_of": as_of, "age_s": age}}


@router.post("/lookup")
async def lookup(body: LookupIn, services: Services) -> dict[str, Any]:
    """The consenting customer with this phone number, loyalty card or tag, with the online
    context central last shared and its age; ``{"found": false}`` otherwise, after the
    same work."""
    kind, secret = body.identifier()
    try:
        normalised = normalise(kind, secret.get_secret_value(), services.config.store.country)
    except IdentifierError as exc:
        raise OperationError(exc.code, str(exc), status=422) from None
    now = time.time()
    found = await services.ledger.read(lambda conn: cache.lookup(conn, kind, normalised, now))
    if found is None:
        return {"found": False}
    return _answer(found, kind, now)


@router.get("/cache")
async def cache_figures(services: Services) -> dict[str, Any]:
    """How many customers and identifiers the store holds, and under which key ids."""
    return await services.ledger.read(cache.figures)
