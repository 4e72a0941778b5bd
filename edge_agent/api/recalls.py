"""``GET /v1/recalls``: the recalls this store holds (from central's ``recall.add``), as
the till enforces them, online or not (docs/protocol.md §5.4)."""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from edge_agent.retail.catalog import conn_query
from edge_agent.retail.recalls import list_recalls
from edge_agent.services import AgentServices

router = APIRouter(tags=["catalog"])


def get_services(request: Request) -> AgentServices:
    services: AgentServices = request.app.state.services
    return services


@router.get("/v1/recalls")
async def get_recalls(services: Annotated[AgentServices, Depends(get_services)]
                      ) -> dict[str, Any]:
    """Active recalls: ``recall_id``, ``gtin``, ``lot`` or ``serial``, ``reason``."""
    def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        return list_recalls(conn_query(conn))

    return {"recalls": await services.ledger.read(read)}
