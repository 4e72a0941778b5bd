"""RetailService on a real ledger file: facts, deltas, bookkeeping rows, idempotency."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.config import StoreSection
from edge_agent.errors import OperationError
from edge_agent.hub import EventHub
from edge_agent.ledger import Ledger
from edge_agent.retail import RetailService
from edge_agent.retail.requests import (
    AdjustmentRequest,
    CountRequest,
    FulfilmentRequest,
    ReceiptRequest,
    ReturnRequest,
    SaleRequest,
    TransferRequest,
)
from tests.edge_agent.retail.seed import (
    PRICE_BARCODE,
    SALE_BARCODE,
    STORE,
    WEIGHT_BARCODE,
    add_count_request,
    add_reservation,
    event_payloads,
    open_ledger,
    stock_from_events,
    stock_table,
)


def sale(lines: list[dict[str, object]], pay: str | None, **extra: object) -> SaleRequest:
    payments = [] if pay is None else [{"method": "cash", "amount": pay}]
    return SaleRequest.model_validate({"terminal": "till-1", "lines": lines,
                                       "payments": payments, **extra})


async def test_sale_by_sku_gtin_and_barcodes(retail: RetailService, ledger: Ledger) -> None:
    result = await retail.sale(sale([
        {"sku": "A-100", "qty": 2},
        {"gtin": "4006381333931"},
        {"barcode": WEIGHT_BARCODE},
        {"barcode": PRICE_BARCODE},
        {"barcode": "CHOC", "qty": 3},
    ], "50.00", customer="LOY-77"), idempotency_key="k1")
    body = result.body
    assert not result.replayed
    # 5.00 + 1.99 + 1234 g * 0.0125 = 15.425 -> 15.43 + 12.34 (price barcode) + 1.05
    assert body["total"] == "35.81"
    assert body["change"] == "14.19"
    lines = body["lines"]
    assert [(x["sku"], x["qty"]) for x in lines] == [
        ("A-100", 2), ("B-200", 1), ("W-300", 1234), ("P-400", 1), ("C-300", 3)]
    assert lines[1]["gtin"] == "04006381333931"
    assert lines[3]["line_total"] == "12.34"
    events = event_payloads(ledger)
    sale_event = next(e for e in events if e["type"] == "sale")
    assert sale_event["data"] == {k: v for k, v in body.items() if k not in ("event", "alerts")}
    assert sale_event["stock"] == [{"sku": s, "delta": -q} for s, q in
                                   [("A-100", 2), ("B-200", 1), ("W-300", 1234), ("P-400", 1),
                                    ("C-300", 3)]]
    # Nothing was in stock: the sale is recorded and an oversold alert in the same commit.
    assert body["alerts"][0]["kind"] == "oversold"
    assert [e["type"] for e in events] == ["sale", "alert"]
    assert events[1]["seq"] == events[0]["seq"] + 1
    assert stock_table(ledger)["W-300"] == (-1234, 0)
    record = await retail.sale_record(body["sale_id"])
    assert record["total"] == "35.81"
    assert record["customer"] == "LOY-77"


async def test_sale_refusals(retail: RetailService, ledger: Ledger) -> None:
    cases = [
        (sale([{"sku": "A-100"}], "2.49"), "payment_short"),
        (sale([{"sku": "NOPE"}], "9"), "unknown_sku"),
        (sale([{"gtin": "96385074"}], "9"), "unknown_sku"),
        (sale([{"barcode": "0000000000000"}], "9"), "unknown_sku"),
        (sale([{"sku": "USD-1"}], "9"), "currency_mismatch"),
        (sale([{"sku": "A-100"}], "9", currency="USD"), "currency_mismatch"),
        (sale([{"barcode": "4111111111111111"}], "9"), "card_data_rejected"),
    ]
    for request, code in cases:
        with pytest.raises(OperationError) as info:
            await retail.sale(request, idempotency_key=None)
        assert info.value.code == code, request
        assert "4111111111111111" not in str(info.value)
    assert event_payloads(ledger) == []
    # A SKU the catalog does not know yet sells when the POS gives the price.
    ok = await retail.sale(sale([{"sku": "NEW-1", "unit_price": "4.00"}], "4.00"),
                           idempotency_key=None)
    assert ok.body["total"] == "4.00"


async def test_idempotency_replay_and_conflict(retail: RetailService, ledger: Ledger) -> None:
    request = sale([{"sku": "A-100"}], "2.50")
    first = await retail.sale(request, idempotency_key="key-1")
    again = await retail.sale(sale([{"sku": "A-100"}], "2.50"), idempotency_key="key-1")
    assert again.replayed
    assert again.body == first.body
    with pytest.raises(OperationError) as info:
        await retail.sale(sale([{"sku": "A-100", "qty": 2}], "5.00"), idempotency_key="key-1")
    assert (info.value.code, info.value.status) == ("idempotency_conflict", 409)
    # Concurrent duplicates: exactly one fact.
    results = await asyncio.gather(*[
        retail.receipt(ReceiptRequest.model_validate({"lines": [{"sku": "A-100", "qty": 5}]}),
                       idempotency_key="rcv-1") for _ in range(10)])
    assert sum(not r.replayed for r in results) == 1
    assert [e["type"] for e in event_payloads(ledger)].count("receipt") == 1
    assert stock_table(ledger)["A-100"] == (4, 0)


async def test_pruned_keys_are_forgotten(retail: RetailService, ledger: Ledger) -> None:
    request = ReceiptRequest.model_validate({"lines": [{"sku": "A-100", "qty": 1}]})
    await retail.receipt(request, idempotency_key="old")
    assert await retail.prune_idempotency_keys("2000-01-01T00:00:00.000Z") == 0
    assert (await retail.receipt(request, idempotency_key="old")).replayed
    assert await retail.prune_idempotency_keys("2999-01-01T00:00:00.000Z") == 1
    assert not (await retail.receipt(request, idempotency_key="old")).replayed
    assert stock_table(ledger)["A-100"] == (2, 0)


async def test_failed_write_leaves_no_key(retail: RetailService, ledger: Ledger) -> None:
    with pytest.raises(OperationError):
        await retail.sale(sale([{"sku": "A-100"}], "1.00"), idempotency_key="k")
    ok = await retail.sale(sale([{"sku": "A-100"}], "2.50"), idempotency_key="k")
    assert not ok.replayed


async def test_returns_against_a_sale(retail: RetailService, ledger: Ledger) -> None:
    sold = await retail.sale(sale([{"sku": "C-300", "qty": 3, "unit_price": "3.33"},
                                   {"sku": "A-100"}], "20"), idempotency_key=None)
    sale_id = sold.body["sale_id"]

    def ret(sku: str, qty: int, **extra: object) -> ReturnRequest:
        return ReturnRequest.model_validate({"sale_id": sale_id,
                                             "lines": [{"sku": sku, "qty": qty}], **extra})

    first = await retail.return_goods(ret("C-300", 2), idempotency_key=None)
    assert first.body["refund_total"] == "6.66"
    with pytest.raises(OperationError) as info:
        await retail.return_goods(ret("C-300", 2), idempotency_key=None)
    assert info.value.code == "return_exceeds_sale"
    with pytest.raises(OperationError) as other:
        await retail.return_goods(ret("B-200", 1), idempotency_key=None)
    assert other.value.code == "return_exceeds_sale"
    last = await retail.return_goods(ret("C-300", 1, restock=False), idempotency_key=None)
    assert last.body["refund_total"] == "3.33"
    with pytest.raises(OperationError) as missing:
        await retail.return_goods(ReturnRequest.model_validate(
            {"sale_id": "nope", "lines": [{"sku": "A-100", "qty": 1}]}), idempotency_key=None)
    assert (missing.value.code, missing.value.status) == ("sale_not_found", 404)
    record = await retail.sale_record(sale_id)
    assert record["returned"] == [{"sku": "C-300", "qty": 3}]
    # restocked 2 of 3 (the last one was not restocked)
    assert stock_table(ledger)["C-300"] == (-1, 0)


async def test_return_without_receipt_follows_policy(tmp_path: Path) -> None:
    request = ReturnRequest.model_validate({"lines": [{"sku": "A-100", "qty": 2}]})
    ledger = open_ledger(tmp_path / "l.db")
    try:
        strict = RetailService(ledger, StoreSection(id="S001", returns_without_receipt=False))
        with pytest.raises(OperationError) as info:
            await strict.return_goods(request, idempotency_key=None)
        assert info.value.code == "returns_need_receipt"
        lenient = RetailService(ledger, STORE)
        done = await lenient.return_goods(request, idempotency_key=None)
        assert done.body["refund_total"] == "5.00"
        assert stock_table(ledger)["A-100"] == (2, 0)
    finally:
        ledger.close()


async def test_count_closes_central_request(retail: RetailService, ledger: Ledger) -> None:
    await retail.receipt(ReceiptRequest.model_validate(
        {"ref": "ASN-1", "lines": [{"sku": "A-100", "qty": 10}]}), idempotency_key=None)
    add_count_request(ledger, "CNT-1", ["A-100", "B-200"])
    result = await retail.count(CountRequest.model_validate(
        {"count_id": "CNT-1", "lines": [{"sku": "A-100", "counted": 7},
                                        {"sku": "B-200", "counted": 1}]}), idempotency_key=None)
    assert result.body["closed_request"] is True
    assert result.body["lines"] == [{"sku": "A-100", "counted": 7, "expected": 10},
                                    {"sku": "B-200", "counted": 1, "expected": 0}]
    row = ledger.read_blocking(lambda c: c.execute(
        "SELECT status, closed_seq FROM count_requests WHERE count_id = 'CNT-1'").fetchone())
    assert (row[0], row[1]) == ("closed", result.body["event"]["seq"])
    assert stock_table(ledger)["A-100"] == (7, 0)
    local = await retail.count(CountRequest.model_validate(
        {"lines": [{"sku": "A-100", "counted": 7}]}), idempotency_key=None)
    assert local.body["closed_request"] is False
    assert local.body["count_id"]


async def test_fulfilment_lifecycle(retail: RetailService, ledger: Ledger) -> None:
    await retail.receipt(ReceiptRequest.model_validate(
        {"lines": [{"sku": "A-100", "qty": 5}, {"sku": "B-200", "qty": 5}]}),
        idempotency_key=None)
    add_reservation(ledger, "R1", {"A-100": 2, "B-200": 1})
    assert stock_table(ledger)["A-100"] == (5, 2)
    part = await retail.fulfil(FulfilmentRequest.model_validate(
        {"reservation_id": "R1", "lines": [{"sku": "A-100", "qty": 1}]}), idempotency_key=None)
    assert part.body["status"] == "open"
    with pytest.raises(OperationError) as over:
        await retail.fulfil(FulfilmentRequest.model_validate(
            {"reservation_id": "R1", "lines": [{"sku": "A-100", "qty": 2}]}),
            idempotency_key=None)
    assert over.value.code == "fulfilment_exceeds_reservation"
    rest = await retail.fulfil(FulfilmentRequest(reservation_id="R1"), idempotency_key=None)
    assert rest.body["lines"] == [{"sku": "A-100", "qty": 1}, {"sku": "B-200", "qty": 1}]
    assert rest.body["status"] == "fulfilled"
    assert stock_table(ledger)["A-100"] == (3, 0)
    assert stock_table(ledger)["B-200"] == (4, 0)
    with pytest.raises(OperationError) as twice:
        await retail.fulfil(FulfilmentRequest(reservation_id="R1"), idempotency_key=None)
    assert twice.value.code == "reservation_closed"
    with pytest.raises(OperationError) as unknown:
        await retail.fulfil(FulfilmentRequest(reservation_id="R9"), idempotency_key=None)
    assert unknown.value.code == "reservation_not_found"
    reservation = await retail.reservation("R1")
    assert reservation["status"] == "fulfilled"
    assert reservation["closed_seq"] == rest.body["event"]["seq"]
    event = event_payloads(ledger)[-1]
    assert event["type"] == "fulfilment"
    assert event["reserve"] == [{"sku": "A-100", "delta": -1}, {"sku": "B-200", "delta": -1}]


async def test_stock_views_and_movements(retail: RetailService, ledger: Ledger) -> None:
    await retail.receipt(ReceiptRequest.model_validate(
        {"lines": [{"sku": "A-100", "qty": 10}, {"sku": "B-200", "qty": 1}]}),
        idempotency_key=None)
    await retail.adjustment(AdjustmentRequest.model_validate(
        {"reason": "damage", "lines": [{"sku": "A-100", "qty": -1}]}), idempotency_key=None)
    await retail.transfer_out(TransferRequest.model_validate(
        {"to_store": "S002", "ref": "T-1", "lines": [{"sku": "A-100", "qty": 2}]}),
        idempotency_key=None)
    add_reservation(ledger, "R1", {"A-100": 3})
    item = await retail.stock_item("A-100")
    assert item == {"sku": "A-100", "on_hand": 7, "reserved": 3, "available": 4,
                    "in_catalog": True, "name": "Apple juice 1l",
                    "price": "2.50", "currency": "EUR"}
    listing = await retail.stock_list()
    assert listing["totals"] == {"skus": 2, "on_hand": 8, "reserved": 3, "available": 5}
    low = await retail.low_stock(threshold=1)
    low_skus = [x["sku"] for x in low["items"]]
    assert "B-200" in low_skus
    assert "C-300" in low_skus
    assert "A-100" not in low_skus
    moves = await retail.movements("A-100")
    assert [(m["type"], m["stock"]) for m in moves["movements"]] == [
        ("transfer.out", -2), ("adjustment", -1), ("receipt", 10)]
    assert (await retail.movements("A-10"))["movements"] == []  # prefix is not a match
    found = await retail.lookup(SALE_BARCODE)
    assert (found["sku"], found["available"], found["price"]) == ("A-100", 4, "2.50")
    weighed = await retail.lookup(WEIGHT_BARCODE)
    assert (weighed["sku"], weighed["qty"]) == ("W-300", 1234)


OPS = st.lists(st.tuples(
    st.sampled_from(["sale", "receipt", "adjust", "count", "transfer", "return", "fulfil"]),
    st.sampled_from(["A-100", "B-200", "C-300"]),
    st.integers(min_value=1, max_value=6),
), min_size=1, max_size=25)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPS)
def test_stock_equals_sum_of_deltas(tmp_path_factory: pytest.TempPathFactory,
                                    plan: list[tuple[str, str, int]]) -> None:
    """Over random mixes of operations (some refused), stock on hand per SKU equals the sum
    of every recorded stock delta, and reserved never goes below zero."""
    ledger = open_ledger(tmp_path_factory.mktemp("prop") / "l.db")
    retail = RetailService(ledger, STORE, hub=EventHub())
    add_reservation(ledger, "R1", {"A-100": 3, "C-300": 2})
    model: dict[str, int] = {}
    sales: list[str] = []

    async def run() -> None:
        for index, (kind, sku, qty) in enumerate(plan):
            key = f"k{index}"
            try:
                if kind == "sale":
                    r = await retail.sale(sale([{"sku": sku, "qty": qty}], "100"),
                                          idempotency_key=key)
                    sales.append(r.body["sale_id"])
                    model[sku] = model.get(sku, 0) - qty
                elif kind == "receipt":
                    await retail.receipt(ReceiptRequest.model_validate(
                        {"lines": [{"sku": sku, "qty": qty}]}), idempotency_key=key)
                    model[sku] = model.get(sku, 0) + qty
                elif kind == "adjust":
                    await retail.adjustment(AdjustmentRequest.model_validate(
                        {"reason": "correction", "lines": [{"sku": sku, "qty": -qty}]}),
                        idempotency_key=key)
                    model[sku] = model.get(sku, 0) - qty
                elif kind == "count":
                    await retail.count(CountRequest.model_validate(
                        {"lines": [{"sku": sku, "counted": qty}]}), idempotency_key=key)
                    model[sku] = qty
                elif kind == "transfer":
                    await retail.transfer_out(TransferRequest.model_validate(
                        {"to_store": "S9", "ref": "x", "lines": [{"sku": sku, "qty": qty}]}),
                        idempotency_key=key)
                    model[sku] = model.get(sku, 0) - qty
                elif kind == "return" and sales:
                    await retail.return_goods(ReturnRequest.model_validate(
                        {"sale_id": sales[-1], "lines": [{"sku": sku, "qty": qty}]}),
                        idempotency_key=key)
                    model[sku] = model.get(sku, 0) + qty
                elif kind == "fulfil":
                    await retail.fulfil(FulfilmentRequest.model_validate(
                        {"reservation_id": "R1", "lines": [{"sku": sku, "qty": qty}]}),
                        idempotency_key=key)
                    model[sku] = model.get(sku, 0) - qty
            except OperationError as exc:
                refusals.append(exc.code)
            if index % 5 == 0:  # replays change nothing
                await retail.receipt(ReceiptRequest.model_validate(
                    {"lines": [{"sku": "A-100", "qty": 1}]}), idempotency_key="replay")
                if index == 0:
                    model["A-100"] = model.get("A-100", 0) + 1

    refusals: list[str] = []
    try:
        asyncio.run(run())
        assert set(refusals) <= {"return_exceeds_sale", "fulfilment_exceeds_reservation",
                                 "reservation_closed"}
        table = stock_table(ledger)
        on_hand = {sku: v[0] for sku, v in table.items() if v[0]}
        assert on_hand == stock_from_events(ledger)
        assert on_hand == {k: v for k, v in model.items() if v}
        assert all(v[1] >= 0 for v in table.values())
        reserved = json.loads(ledger.read_blocking(lambda c: c.execute(
            "SELECT remaining FROM reservations").fetchone()[0]))
        for line in reserved:
            assert table.get(line["sku"], (0, 0))[1] == line["qty"]
    finally:
        ledger.close()


async def test_ledger_stats_see_every_fact(retail: RetailService, ledger: Ledger) -> None:
    """Writes that append and then run SQL still leave the outbox figures right."""
    await retail.sale(sale([{"sku": "A-100"}], "2.50"), idempotency_key="s1")
    await retail.receipt(ReceiptRequest.model_validate({"lines": [{"sku": "A-100", "qty": 1}]}),
                         idempotency_key="r1")
    stats = await ledger.stats()
    assert (stats.last_seq, stats.outbox_pending) == (3, 3)  # sale, oversold alert, receipt
    digest = await ledger.digest_state()
    assert digest.through_seq == 3
