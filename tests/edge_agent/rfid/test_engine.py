"""The RFID engine on a real ledger file: sold serials, counts by zone and store, accuracy,
exit alerts, restart, bad input."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from edge_agent.errors import ConfigError, OperationError
from edge_agent.rfid.engine import RfidEngine
from tests.edge_agent.rfid.conftest import (
    FOREIGN_GTIN,
    GTINS,
    SKUS,
    epc_hex,
    make_config,
    uhf,
)

A, B = GTINS[0], GTINS[1]
SKU_A, SKU_B = SKUS[0], SKUS[1]


async def test_sale_records_the_serial_and_a_return_brings_it_back(make_rig: Any) -> None:
    rig = await make_rig()
    tag = epc_hex(A, 1001)
    sale = await rig.sell(tag, customer="C-42")
    line = sale["lines"][0]
    assert (line["sku"], line["qty"], line["epc"], line["serial"]) == (SKU_A, 1, tag, "1001")
    assert line["gtin"] == A
    rows = rig.ledger.read_blocking(lambda c: c.execute(
        "SELECT sale_id, returned_at FROM rfid_sold WHERE epc = ?", (tag,)).fetchall())
    assert rows[0][0] == sale["sale_id"]
    assert rows[0][1] is None
    # The RFID tables never hold a shopper identifier.
    columns = rig.ledger.read_blocking(lambda c: {
        str(r[1]) for t in ("rfid_sold", "rfid_floor", "rfid_exit_alerts")
        for r in c.execute(f"PRAGMA table_info({t})")})
    assert not columns & {"customer", "visitor", "visit_id"}
    back = await rig.give_back(tag, SKU_A)
    assert back["lines"][0]["epc"] == tag
    rows = rig.ledger.read_blocking(lambda c: c.execute(
        "SELECT returned_at, return_id FROM rfid_sold WHERE epc = ?", (tag,)).fetchall())
    assert rows[0][0] is not None
    assert rows[0][1] == back["return_id"]


@pytest.mark.parametrize(("lines", "code"), [
    ([{"epc": "E28011700000020F1A2B3C4D"}], "invalid_epc"),
    ([{"sku": SKUS[1], "epc": epc_hex(GTINS[0], 5)}], "epc_mismatch"),
    ([{"epc": epc_hex(GTINS[0], 5)}, {"epc": epc_hex(GTINS[0], 5)}], "duplicate_epc"),
    ([{"epc": epc_hex(FOREIGN_GTIN, 5)}], "unknown_sku"),
])
async def test_bad_tagged_lines_are_refused_with_a_code(make_rig: Any, lines: Any,
                                                        code: str) -> None:
    from edge_agent.retail.requests import SaleRequest  # noqa: PLC0415

    rig = await make_rig()
    with pytest.raises(OperationError) as err:
        await rig.retail.sale(SaleRequest.model_validate(
            {"terminal": "T1", "lines": lines, "payments": [{"method": "cash",
                                                              "amount": "999"}]}),
            idempotency_key=None)
    assert err.value.code == code
    assert rig.events("sale") == []


async def test_sale_line_with_key_and_epc_and_qty_rules() -> None:
    from pydantic import ValidationError  # noqa: PLC0415

    from edge_agent.retail.requests import ReturnLineIn, SaleLineIn  # noqa: PLC0415

    SaleLineIn.model_validate({"sku": "X", "epc": "30" + "0" * 22})
    with pytest.raises(ValidationError):
        SaleLineIn.model_validate({"epc": "30" + "0" * 22, "qty": 2})
    with pytest.raises(ValidationError):
        SaleLineIn.model_validate({"epc": "30" + "0" * 21})
    with pytest.raises(ValidationError):
        ReturnLineIn.model_validate({"sku": "X", "qty": 2, "epc": "30" + "0" * 22})


async def test_zone_count_with_a_sale_mid_count(make_rig: Any) -> None:
    rig = await make_rig()
    await rig.receive({SKU_A: 12, SKU_B: 3})  # the projection: 12 and 3
    floor_a = [epc_hex(A, n) for n in range(10)]  # 10 A on the floor
    back_b = [epc_hex(B, n) for n in range(4)]  # 4 B in the back room
    # The back room was counted earlier: its B tags are located there.
    first = await rig.engine.open_count(["backroom"])
    for tag in back_b:
        rig.tag("back-1", tag)
    closed = await rig.engine.close_count(first["count_id"])
    assert [(x["sku"], x["counted"], x["expected"]) for x in closed["lines"]] == [(SKU_B, 4, 3)]

    count = await rig.engine.open_count(["floor"], count_id="floor-2026-11-25")
    for tag in floor_a[:6]:
        rig.tag("floor-1", tag)
    await rig.sell(floor_a[0])  # read, then sold: not counted
    await rig.sell(floor_a[9])  # sold before being read, then read at the till
    for tag in floor_a[6:]:
        rig.tag("floor-1", tag)
    rig.tag("floor-1", floor_a[3])  # read twice: one item
    rig.tag("back-1", epc_hex(A, 500))  # another zone: not in this count
    rig.tag("floor-1", epc_hex(FOREIGN_GTIN, 1))  # unknown GTIN: reported
    rig.tag("floor-1", epc_hex(B, 77))  # one B on the floor too
    view = await rig.engine.count_view(count["count_id"])
    assert view["tags"] == 12
    assert view["per_gtin"][A] == 10
    result = await rig.engine.close_count(count["count_id"])
    lines = {x["sku"]: x for x in result["lines"]}
    assert lines[SKU_A]["counted"] == 8  # 10 tags, 2 sold
    assert lines[SKU_A]["expected"] == 10  # 12 received, 2 sold
    assert lines[SKU_B]["counted"] == 5  # 1 on the floor + 4 located in the back room
    assert result["sold_excluded"] == 2
    assert result["unknown_gtins"] == [{"gtin": FOREIGN_GTIN, "tags": 1}]
    assert rig.on_hand()[SKU_A] == 8
    assert rig.on_hand()[SKU_B] == 5
    event = rig.events("count")[-1]
    assert event["data"]["source"] == "rfid"
    assert event["data"]["zones"] == ["floor"]
    assert event["data"]["counted_at"] == result["counted_at"]
    assert event["data"]["count_id"] == "floor-2026-11-25"
    assert {s["sku"]: s["delta"] for s in event["stock"]} == {SKU_A: -2, SKU_B: 1}
    accuracy = {x["sku"]: x for x in await rig.engine.accuracy()}
    assert accuracy[SKU_A]["variance"] == -2
    assert accuracy[SKU_A]["last_counted_at"] == result["counted_at"]
    # A retried close answers the recorded result; nothing is recorded twice.
    again = await rig.engine.close_count(count["count_id"])
    assert again == result
    assert len(rig.events("count")) == 2


async def test_store_count_zeroes_tagged_skus_not_found(make_rig: Any) -> None:
    rig = await make_rig()
    await rig.receive({SKU_A: 2, SKU_B: 2})
    first = await rig.engine.open_count()
    for n in range(2):
        rig.tag("floor-1", epc_hex(A, n))
        rig.tag("back-1", epc_hex(B, n))
    await rig.engine.close_count(first["count_id"])
    second = await rig.engine.open_count()
    assert second["scope"] == "store"
    rig.tag("floor-1", epc_hex(A, 0))  # A-1 and both B are gone (stolen)
    result = await rig.engine.close_count(second["count_id"])
    assert {x["sku"]: x["counted"] for x in result["lines"]} == {SKU_A: 1, SKU_B: 0}
    assert rig.on_hand() == {SKU_A: 1, SKU_B: 0} | {k: v for k, v in rig.on_hand().items()
                                                    if k not in {SKU_A, SKU_B}}


async def test_open_count_errors(make_rig: Any, tmp_path: Path) -> None:
    rig = await make_rig()
    with pytest.raises(OperationError) as err:
        await rig.engine.open_count(["nowhere"])
    assert err.value.code == "unknown_zone"
    await rig.engine.open_count(["floor"], count_id="c1")
    with pytest.raises(OperationError) as err:
        await rig.engine.open_count(None)
    assert err.value.code == "count_overlap"
    await rig.engine.open_count(["backroom"], count_id="c2")  # another zone: fine
    await rig.engine.cancel_count("c2")
    with pytest.raises(OperationError) as err:
        await rig.engine.open_count(["backroom"], count_id="c2")
    assert err.value.code == "count_exists"
    with pytest.raises(OperationError) as err:
        await rig.engine.close_count("c2")
    assert err.value.code == "count_not_open"
    with pytest.raises(OperationError) as err:
        await rig.engine.count_view("nope")
    assert err.value.code == "count_not_found"
    # Counts open when the agent stops are aborted at the next start.
    again = RfidEngine(rig.services, clock=rig.clock)
    await again.start()
    assert (await again.count_view("c1"))["status"] == "aborted"
    none = await make_rig(devices=[uhf("door-uhf", "door", "entrance")])
    with pytest.raises(OperationError) as err:
        await none.engine.open_count()
    assert err.value.code == "no_inventory_readers"


def test_config_validates_role_and_zone(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inventory"):
        make_config(tmp_path, [{"kind": "em4100", "name": "r", "port": "/dev/null",
                                "role": "inventory", "zone": "floor"}])
    with pytest.raises(ConfigError, match="zone"):
        make_config(tmp_path, [uhf("u", "inventory", "bad zone!")])
    with pytest.raises(ConfigError, match="exit_grace_min"):
        make_config(tmp_path, exit_grace_min=-1)


async def test_exit_alerts(make_rig: Any) -> None:
    rig = await make_rig(exit_grace_min=10, exit_hold_s=2)
    await rig.receive({SKU_A: 5})
    unsold, sold, returned = epc_hex(A, 1), epc_hex(A, 2), epc_hex(A, 3)
    await rig.sell(sold, customer="C-7")
    await rig.sell(returned)
    await rig.give_back(returned, SKU_A)
    for tag in (unsold, sold, returned, epc_hex(FOREIGN_GTIN, 9)):
        rig.tag("door-uhf", tag)
    rig.tag("door-uhf", "E28011700000020F1A2B3C4D")  # a loyalty card: not merchandise
    assert await rig.engine.judge_exits() == []  # held: a sale may be committing
    rig.clock.now += 2
    async with rig.services.hub.subscribe({"alert"}) as queue:
        alerts = await rig.engine.judge_exits()
        topic, published = queue.get_nowait()
    assert [a["epc"] for a in alerts] == [unsold]
    assert topic == "alert"
    assert published["kind"] == "unsold_tag_exit"
    data = rig.events("alert")[-1]["data"]
    assert data["kind"] == "unsold_tag_exit"
    assert data["sku"] == SKU_A
    assert data["serial"] == "1"
    assert data["door"] == "door-uhf"
    assert not {"customer", "visitor"} & set(data)
    figures = rig.engine.figures()
    assert figures["exit_ignored_sold"] == 1
    assert figures["exit_ignored_returned"] == 1
    # The same tag seen again within the grace: still one alert.
    rig.tag("door-uhf", unsold)
    rig.clock.now += 5
    assert await rig.engine.judge_exits() == []
    assert len(rig.events("alert")) == 1
    # Past the grace, the returned tag leaving is unsold merchandise again.
    rig.clock.now += 11 * 60
    rig.tag("door-uhf", returned)
    rig.clock.now += 3
    assert [a["epc"] for a in await rig.engine.judge_exits()] == [returned]


async def test_floor_sightings_and_retention(make_rig: Any) -> None:
    rig = await make_rig(retention_days=1)
    rig.tag("floor-1", epc_hex(A, 1))
    rig.tag("floor-1", "E28011700000020F1A2B3C4D")  # not an SGTIN: never stored
    await rig.engine.tick()
    rows = rig.ledger.read_blocking(lambda c: c.execute(
        "SELECT epc, sku, zone FROM rfid_floor").fetchall())
    assert [tuple(r) for r in rows] == [(epc_hex(A, 1), SKU_A, "floor")]
    rig.clock.now += 2 * 86400
    assert await rig.engine.apply_retention() == 1
    assert rig.ledger.read_blocking(lambda c: c.execute(
        "SELECT count(*) FROM rfid_floor").fetchone()[0]) == 0


async def test_tags_read_at_a_till_are_sold_by_serial(make_rig: Any) -> None:
    till = {"kind": "uhf", "name": "till-uhf", "port": "/dev/null", "mode": "sale",
            "terminal": "T9"}
    rig = await make_rig(devices=[till, uhf("floor-1", "inventory", "floor")])
    await rig.receive({SKU_A: 5, SKU_B: 5})
    shirt, trousers = epc_hex(A, 41), epc_hex(B, 42)
    rig.tag("till-uhf", shirt)
    rig.tag("till-uhf", trousers)
    rig.tag("till-uhf", shirt)  # left the field and came back: one item
    rig.tag("till-uhf", "E28011700000020F1A2B3C4D")  # not merchandise
    assert rig.engine.figures()["till_pending"] == 3
    run = asyncio.create_task(rig.engine.run(), name="test.rfid")

    def done(figures: dict[str, Any]) -> bool:
        return bool(figures["till_tags"] + figures["till_repeats"] >= 3)

    try:
        async with asyncio.timeout(30):
            while not done(rig.engine.figures()):
                assert not run.done(), run
                await asyncio.sleep(0.01)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    basket = await rig.retail.basket("T9")
    assert basket is not None
    assert [(x["sku"], x["qty"]) for x in basket["lines"]] == [(SKU_A, 1), (SKU_B, 1)]
    assert rig.engine.figures()["till_repeats"] == 1
    sale = (await rig.retail.basket_checkout("T9")).body
    assert {(x["sku"], x.get("serial")) for x in sale["lines"]} == {(SKU_A, "41"),
                                                                    (SKU_B, "42")}
    sold = rig.ledger.read_blocking(lambda c: {str(r[0]) for r in c.execute(
        "SELECT epc FROM rfid_sold WHERE returned_at IS NULL")})
    assert sold == {shirt, trousers}
    assert rig.ledger.read_blocking(lambda c: c.execute(
        "SELECT count(*) FROM rfid_basket_tags").fetchone()[0]) == 0
    # The sold shirt read at the till again (in the shopper's bag): refused, published.
    async with rig.services.hub.subscribe({"scan_rejected"}) as queue:
        assert await rig.engine.till_tag("T9", shirt) is None
        _, rejected = queue.get_nowait()
    assert rejected["reason"] == "tag_sold"
    # A cancelled basket's tag rows go with the retention pass.
    await rig.engine.till_tag("T9", epc_hex(A, 43))
    await rig.retail.basket_cancel("T9")
    await rig.engine.apply_retention()
    assert rig.ledger.read_blocking(lambda c: c.execute(
        "SELECT count(*) FROM rfid_basket_tags").fetchone()[0]) == 0


async def test_floor_and_sold_sets_are_bounded(make_rig: Any) -> None:
    rig = await make_rig(max_floor_epcs=1000, max_sold_epcs=1000)
    for n in range(1005):
        rig.clock.now += 0.001
        rig.tag("floor-1", epc_hex(A, n))
    await rig.engine.flush_floor()
    assert await rig.engine.apply_retention() == 5
    kept = rig.ledger.read_blocking(lambda c: {str(r[0]) for r in c.execute(
        "SELECT epc FROM rfid_floor")})
    assert len(kept) == 1000
    assert epc_hex(A, 0) not in kept  # the oldest sightings go first
    assert epc_hex(A, 1004) in kept


async def test_control_barcodes_open_close_and_cancel_counts(make_rig: Any) -> None:
    rig = await make_rig()
    async with rig.services.hub.subscribe({"rfid_count", "scan_rejected"}) as queue:
        assert not await rig.engine.control_scan("till-1", "5901234123457")  # not ours
        assert await rig.engine.control_scan("till-1", "CTL-RFID-CLOSE")
        assert queue.get_nowait()[1]["reason"] == "no_barcode_count"
        assert await rig.engine.control_scan("till-1", "CTL-RFID-COUNT:attic")
        assert queue.get_nowait()[1]["reason"] == "unknown_zone"
        assert await rig.engine.control_scan("till-1", "CTL-RFID-COUNT:floor")
        topic, opened = queue.get_nowait()
        assert (topic, opened["action"], opened["zones"]) == ("rfid_count", "open", ["floor"])
        rig.tag("floor-1", epc_hex(A, 1))
        assert await rig.engine.control_scan("till-1", " CTL-RFID-CLOSE ")
        _, closed = queue.get_nowait()
        assert (closed["action"], closed["status"], closed["tags"]) == ("close", "closed", 1)
        assert await rig.engine.control_scan("till-1", "CTL-RFID-COUNT")  # whole store
        _, store_count = queue.get_nowait()
        assert store_count["scope"] == "store"
        assert await rig.engine.control_scan("till-1", "CTL-RFID-CANCEL")
        assert queue.get_nowait()[1]["status"] == "cancelled"
    assert rig.on_hand()[SKU_A] == 1


async def test_a_late_older_sighting_does_not_move_a_tag_back(make_rig: Any) -> None:
    rig = await make_rig()
    tag = epc_hex(A, 7)
    count = await rig.engine.open_count(["floor"])
    rig.tag("floor-1", tag)
    await rig.engine.close_count(count["count_id"])  # located on the floor at the close
    rig.clock.now -= 5
    rig.tag("back-1", tag)  # an older sighting, still queued, flushed after the close
    rig.clock.now += 5
    await rig.engine.flush_floor()
    zone = rig.ledger.read_blocking(lambda c: c.execute(
        "SELECT zone FROM rfid_floor WHERE epc = ?", (tag,)).fetchone()[0])
    assert zone == "floor"


async def test_a_count_past_its_memory_bound_refuses_to_close(make_rig: Any) -> None:
    rig = await make_rig(max_count_epcs=100)
    count = await rig.engine.open_count(["floor"])
    for n in range(101):
        rig.tag("floor-1", epc_hex(A, n))
    view = await rig.engine.count_view(count["count_id"])
    assert (view["tags"], view["overflow"]) == (100, 1)
    with pytest.raises(OperationError) as err:
        await rig.engine.close_count(count["count_id"])
    assert err.value.code == "count_overflow"
    assert rig.events("count") == []
    assert (await rig.engine.cancel_count(count["count_id"]))["status"] == "cancelled"


async def test_off_floor_tags_alert_only_when_configured(make_rig: Any) -> None:
    rig = await make_rig(exit_alert_off_floor=False, exit_hold_s=0)
    seen, stranger = epc_hex(A, 1), epc_hex(A, 2)
    rig.tag("floor-1", seen)
    await rig.engine.flush_floor()
    rig.tag("door-uhf", seen)
    rig.tag("door-uhf", stranger)  # bought at another store of the chain, never on our floor
    rig.tag("door-uhf", epc_hex(FOREIGN_GTIN, 3))
    alerts = await rig.engine.judge_exits()
    assert [(a["epc"], a["on_floor"]) for a in alerts] == [(seen, True)]
    figures = rig.engine.figures()
    assert figures["exit_ignored_off_floor"] == 1
    assert figures["exit_ignored_foreign"] == 1
