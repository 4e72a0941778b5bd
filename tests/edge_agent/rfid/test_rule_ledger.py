"""The counting rule on a real ledger, for random interleavings of tag reads, sales by EPC
and returns by EPC during a count: after the close, every SKU's stock equals the unsold
tagged items, and the count's lines say so."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.epc import decode_sgtin96
from drivers.events import TagEvent
from edge_agent.config import Config
from edge_agent.ledger import Ledger
from edge_agent.retail import RetailService
from edge_agent.retail.requests import ReceiptRequest, ReturnRequest, SaleRequest
from edge_agent.rfid.engine import RfidEngine
from edge_agent.services import AgentServices
from tests.edge_agent.rfid.conftest import GTINS, SKU_OF, Clock, epc_hex, make_config, seed_catalog


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), items=st.integers(1, 40), steps=st.integers(0, 120))
def test_interleavings_on_the_ledger(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                     items: int, steps: int) -> None:
    rng = random.Random(seed)
    home = tmp_path_factory.mktemp("rule")
    config = make_config(home)
    ledger = Ledger.open(config.database.path, config.store.id)
    try:
        asyncio.run(_scenario(rng, config, ledger, items, steps))
    finally:
        ledger.close()


async def _scenario(rng: random.Random, config: Config, ledger: Ledger, items: int,
                    steps: int) -> None:
    await ledger.write(seed_catalog)
    services = AgentServices(config=config, ledger=ledger)
    retail = RetailService(ledger, config.store, hub=services.hub)
    engine = RfidEngine(services, retail=retail, clock=Clock(0.0))
    await engine.start()
    gtins = GTINS[:3]
    tags = {epc_hex(rng.choice(gtins), n): "" for n in range(items)}
    for epc in tags:
        tags[epc] = SKU_OF[_gtin(epc, gtins)]
    projection = {SKU_OF[g]: rng.randint(0, 60) for g in gtins}
    await retail.receipt(ReceiptRequest.model_validate(
        {"lines": [{"sku": s, "qty": q} for s, q in projection.items() if q]}),
        idempotency_key=None)
    floor = next(d for d in config.devices if d.name == "floor-1")
    sold: set[str] = set()
    count = await engine.open_count(["floor"])

    def read(epc: str) -> None:
        engine.handle(floor, TagEvent(device="floor-1", tag_id=epc, technology="uhf",
                                      present=True, epc_gtin=_gtin(epc, gtins),
                                      epc_serial="0"))

    for _ in range(steps):
        epc = rng.choice(list(tags))
        roll = rng.random()
        if roll < 0.5:
            read(epc)  # on the floor, or on the counter after its sale
        elif roll < 0.8 and epc not in sold:
            await retail.sale(SaleRequest.model_validate(
                {"terminal": "T1", "lines": [{"epc": epc}],
                 "payments": [{"method": "cash", "amount": "100"}]}), idempotency_key=None)
            sold.add(epc)
        elif epc in sold:
            await retail.return_goods(ReturnRequest.model_validate(
                {"lines": [{"sku": tags[epc], "qty": 1, "epc": epc, "unit_price": "19.90"}]}),
                idempotency_key=None)
            sold.discard(epc)
    for epc in tags:  # every unsold item is on the floor and read before the cut-off
        if epc not in sold:
            read(epc)
    result = await engine.close_count(count["count_id"])
    truth: dict[str, int] = {}
    for epc, sku in tags.items():
        if epc not in sold:
            truth[sku] = truth.get(sku, 0) + 1
    counted = {x["sku"]: x["counted"] for x in result["lines"]}
    assert {k: v for k, v in counted.items() if v} == truth
    stock = ledger.read_blocking(lambda c: {str(r[0]): int(r[1]) for r in c.execute(
        "SELECT sku, on_hand FROM stock")})
    for sku in counted:
        assert stock[sku] == truth.get(sku, 0)


def _gtin(epc: str, gtins: list[str]) -> str:
    sg = decode_sgtin96(bytes.fromhex(epc))
    assert sg is not None
    assert sg.gtin in gtins
    return sg.gtin
