"""Request parts several API routers share: the ``Idempotency-Key`` header, the terminal
path segment, and the dependencies that hand a route the app's services."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request

from edge_agent.retail import RetailService
from edge_agent.services import AgentServices

IdempotencyKey = Annotated[
    str,
    Header(alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$",
           description="Unique per logical write; a retry with the same key and body returns "
                       "the original result, another body gets 409 idempotency_conflict."),
]
Terminal = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def get_services(request: Request) -> AgentServices:
    """The agent's shared services (``create_app`` puts them in ``app.state``)."""
    services: AgentServices = request.app.state.services
    return services


def get_retail(request: Request) -> RetailService:
    """The app's retail service (``create_app`` makes it, or takes the caller's)."""
    retail: RetailService = request.app.state.retail
    return retail


Services = Annotated[AgentServices, Depends(get_services)]
Retail = Annotated[RetailService, Depends(get_retail)]
