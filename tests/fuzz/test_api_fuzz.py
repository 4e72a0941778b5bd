"""Fuzzing the local API's write endpoints with hostile bodies (in-process ASGI, real ledger).

Random JSON, near-valid bodies with one field mutated, invalid UTF-8, deep nesting, huge
numbers and floats, random idempotency keys: every answer is a declared JSON error
(4xx with a stable ``code``) or a success; never a 500, never a traceback. Afterwards the
ledger's stock projection still equals the sum of its events' stock lists and its seqs
have no gap.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge_agent.api.app import create_app
from edge_agent.retail import RetailService
from edge_agent.services import AgentServices
from tests.edge_agent.retail.seed import config, open_ledger

VALID: dict[str, dict[str, Any]] = {
    "/v1/sales": {"terminal": "t1", "lines": [{"sku": "A-100", "qty": 1}],
                  "payments": [{"method": "cash", "amount": "2.50"}]},
    "/v1/returns": {"lines": [{"sku": "A-100", "qty": 1}], "restock": True},
    "/v1/receipts": {"ref": "ASN-1", "lines": [{"sku": "A-100", "qty": 3}]},
    "/v1/adjustments": {"reason": "damage", "lines": [{"sku": "B-200", "qty": -1}]},
    "/v1/counts": {"lines": [{"sku": "B-200", "counted": 4}]},
    "/v1/transfers": {"to_store": "S002", "ref": "TR-1", "lines": [{"sku": "A-100", "qty": 1}]},
    "/v1/fulfilments": {"reservation_id": "R-1"},
}

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                      st.text(max_size=20), st.floats(allow_nan=False, allow_infinity=False),
                      st.sampled_from(["A-100", "B-200", "-1", "1e999", "0.001", "\u0000",
                                       "\ud7ff", "4111111111111111"]))
json_any = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=25)


def _mutate(body: Any, path: list[int], value: Any) -> Any:
    """Replace one node of ``body`` (chosen by ``path``) with ``value``."""
    if not path or not isinstance(body, dict | list) or not body:
        return value
    if isinstance(body, dict):
        key = sorted(body)[path[0] % len(body)]
        return {**body, key: _mutate(body[key], path[1:], value)}
    index = path[0] % len(body)
    return [*body[:index], _mutate(body[index], path[1:], value), *body[index + 1:]]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    path = draw(st.sampled_from(sorted(VALID)))
    kind = draw(st.integers(0, 9))
    ascii_only = draw(st.booleans())
    if kind < 5:
        body = json.dumps(_mutate(VALID[path], draw(st.lists(st.integers(0, 9), max_size=4)),
                                  draw(json_any)), ensure_ascii=ascii_only).encode()
    elif kind < 7:
        body = json.dumps(draw(json_any), ensure_ascii=ascii_only).encode()
    elif kind == 7:
        body = draw(st.binary(max_size=200))
    elif kind == 8:
        depth = draw(st.integers(30, 5000))
        body = b'{"lines":' + b"[" * depth + b"]" * depth + b"}"
    else:
        body = json.dumps(VALID[path]).encode().replace(b'"A-100"', b'"A-\xff"')
    headers = {"content-type": "application/json"}
    if draw(st.integers(0, 9)):
        headers["Idempotency-Key"] = draw(st.one_of(
            st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e),
                    min_size=1, max_size=20), st.just("same-key")))
    return path, body, headers


def test_hostile_api_bodies_get_declared_errors_and_never_corrupt_the_ledger() -> None:
    directory = Path(tempfile.mkdtemp(prefix="fuzz-api-"))
    ledger = open_ledger(directory / "ledger.db")
    cfg = config(api={"socket": str(directory / "api.sock"), "max_body_bytes": 16384})
    services = AgentServices(config=cfg, ledger=ledger)
    retail = RetailService(ledger, cfg.store, controls=cfg.controls, hub=services.hub)
    app = create_app(services, retail=retail)
    loop = asyncio.new_event_loop()
    statuses: dict[int, int] = {}

    async def call(path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
            return await client.post(path, content=body, headers=headers)

    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "80")) * 4, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(requests())
    # two well-formed bodies run in every test run, so a success is always among the answers (the
    # random draws alone may mutate every body out of validity)
    @example(("/v1/receipts", orjson.dumps(VALID["/v1/receipts"]), {"Idempotency-Key": "r"}))
    @example(("/v1/sales", orjson.dumps(VALID["/v1/sales"]), {"Idempotency-Key": "s"}))
    def run(request: tuple[str, bytes, dict[str, str]]) -> None:
        path, body, headers = request
        response = loop.run_until_complete(call(path, body, headers))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (path, body[:200], response.text[:500])
        payload = response.json()
        if response.status_code >= 400:
            assert isinstance(payload.get("code"), str), payload
            assert "Traceback" not in response.text
            assert b"4111111111111111" not in response.content

    try:
        loop.run_until_complete(call("/v1/receipts", orjson.dumps(VALID["/v1/receipts"]),
                                     {"Idempotency-Key": "seed"}))
        run()
        rows = ledger.read_blocking(lambda c: c.execute(
            "SELECT seq, payload FROM events ORDER BY id").fetchall())
        assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
        from_events: dict[str, int] = {}
        for _, payload in rows:
            for d in json.loads(bytes(payload)).get("stock", []):
                from_events[d["sku"]] = from_events.get(d["sku"], 0) + d["delta"]
        stock = dict(ledger.read_blocking(lambda c: c.execute(
            "SELECT sku, on_hand FROM stock WHERE on_hand != 0").fetchall()))
        assert stock == {k: v for k, v in from_events.items() if v}
        assert statuses.get(201, 0) >= 1, statuses
    finally:
        loop.close()
        ledger.close()
