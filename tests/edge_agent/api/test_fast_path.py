"""POST /v1/sales answers the same through the fast path and the documented FastAPI route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from edge_agent.api.app import create_app
from edge_agent.api.fast_path import SalesFastPath
from edge_agent.services import AgentServices
from tests.edge_agent.retail.seed import config, open_ledger

CASES: list[tuple[bytes, dict[str, str]]] = [
    (b'{"terminal":"t","lines":[{"sku":"A-100"}],"payments":[{"method":"cash","amount":"9"}]}',
     {"Idempotency-Key": "same"}),
    (b'{"terminal":"t","lines":[{"sku":"A-100"}],"payments":[{"method":"cash","amount":"9"}]}',
     {"Idempotency-Key": "same"}),
    (b'{"terminal":"t","lines":[{"sku":"A-100","qty":2}],"payments":[{"method":"cash",'
     b'"amount":"99"}]}', {"Idempotency-Key": "same"}),
    (b'{"terminal":"t","lines":[{"sku":"A-100","qty":1.0}]}', {"Idempotency-Key": "k2"}),
    (b'{"terminal":"t","lines":[{"sku":"NOPE"}]}', {"Idempotency-Key": "k3"}),
    (b'{"terminal":"t","lines":[{"sku":"A-100"}],"payments":[{"method":"cash","amount":"1"}]}',
     {"Idempotency-Key": "k4"}),
    (b'{"terminal":"t","lines":[{"sku":"A-100"}],"customer":"4111111111111111"}',
     {"Idempotency-Key": "k5"}),
    (b'{"terminal":"t","lines":[{"sku":"A-100"}]}', {}),
    (b'{"terminal":"t","lines":[{"sku":"A-100"}]}', {"Idempotency-Key": "bad key"}),
]


async def answers(tmp: Path, fast: bool) -> list[tuple[int, Any]]:
    ledger = open_ledger(tmp / ("fast.db" if fast else "route.db"))
    try:
        app = create_app(AgentServices(config=config(), ledger=ledger))
        if not fast:
            app.user_middleware = [m for m in app.user_middleware
                                  if getattr(m, "cls", None) is not SalesFastPath]
        out: list[tuple[int, Any]] = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://agent") as client:
            for body, headers in CASES:
                r = await client.post("/v1/sales", content=body, headers={
                    "content-type": "application/json", **headers})
                data = r.json()
                for volatile in ("sale_id", "event", "alerts"):
                    if isinstance(data, dict):
                        data.pop(volatile, None)
                codes = [e["loc"] for e in data.get("errors", [])] if "errors" in data else None
                out.append((r.status_code, (data.get("code"), codes, r.headers.get(
                    "idempotent-replayed")) if "code" in data else data))
        return out
    finally:
        ledger.close()


async def test_fast_path_matches_the_route(tmp_path: Path) -> None:
    fast = await answers(tmp_path, fast=True)
    route = await answers(tmp_path, fast=False)
    assert [status for status, _ in fast] == [201, 201, 409, 422, 422, 422, 422, 422, 422]
    for index, (one, other) in enumerate(zip(fast, route, strict=True)):
        assert one == other, (index, one, other)
