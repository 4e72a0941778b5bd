"""The counting rule (edge_agent.rfid.tally), pure: any interleaving of reads, sales and
returns during a count gives the true per-SKU quantity at the cut-off."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.errors import OperationError
from edge_agent.rfid.serials import parse_epc
from edge_agent.rfid.tally import LINES_PER_FACT, CountSession, count_facts, tally

GTINS = [f"0400000000{n:03d}0" for n in range(5)]
SKU_OF: dict[str, str | None] = {g: f"SKU-{i}" for i, g in enumerate(GTINS)}


def epc(n: int) -> str:
    return f"30{n:022X}"


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), items=st.integers(1, 60), steps=st.integers(0, 200))
def test_any_interleaving_counts_the_truth(seed: int, items: int, steps: int) -> None:
    rng = random.Random(seed)
    gtin = {epc(i): rng.choice(GTINS) for i in range(items)}
    sold: set[str] = set()
    session = CountSession("c1", frozenset({"floor"}), 0.0)
    projection = {sku: rng.randint(-3, 80) for sku in SKU_OF.values() if sku}
    for _ in range(steps):
        e = rng.choice(list(gtin))
        action = rng.random()
        if action < 0.6:
            # Read while on the floor, or still on the counter just after its sale.
            session.read(e, gtin[e], "floor")
        elif action < 0.85 and e not in sold:
            sold.add(e)
            sku = SKU_OF[gtin[e]]
            assert sku is not None
            projection[sku] -= 1
        elif e in sold:
            sold.discard(e)  # returned and restocked
            sku = SKU_OF[gtin[e]]
            assert sku is not None
            projection[sku] += 1
    for e, g in gtin.items():  # coverage: every item on the floor at the cut-off was read
        if e not in sold and rng.random() < 0.7:
            session.read(e, g, "floor")
    for e, g in gtin.items():
        if e not in sold and e not in session.epcs:
            session.read(e, g, "floor")
    result = tally(session.epcs, sold, SKU_OF, zones=session.zones)
    truth: dict[str, int] = {}
    for e, g in gtin.items():
        sku = SKU_OF[g]
        if e not in sold and sku is not None:
            truth[sku] = truth.get(sku, 0) + 1
    assert result.counted == dict(sorted(truth.items()))
    facts = count_facts("c1", result, projection, counted_at="2026-11-25T10:00:00.000Z",
                        zones=["floor"], session=session)
    after = dict(projection)
    for fact in facts:
        for sku, delta in fact.stock:
            after[sku] += delta
    for sku, qty in truth.items():
        assert after[sku] == qty  # the projection lands on the truth, no double count
    assert result.sold_excluded == len(sold & set(session.epcs))


def test_read_then_sold_is_not_counted_and_unknown_gtins_are_reported() -> None:
    session = CountSession("c", None, 0.0)
    assert session.read(epc(1), GTINS[0], "a")
    assert not session.read(epc(1), GTINS[0], "b")  # one item, whatever the zone
    session.read(epc(2), GTINS[0], "a")
    session.read(epc(3), "09999999999994", "a")
    session.read("E28011700000020F1A2B3C4D", None, "a")  # not an SGTIN: counted, not kept
    result = tally(session.epcs, {epc(2)}, SKU_OF)
    assert result.counted == {"SKU-0": 1}
    assert result.sold_excluded == 1
    assert result.unknown_gtins == {"09999999999994": 1}
    assert session.non_sgtin_reads == 1
    assert "E28011700000020F1A2B3C4D" not in session.epcs


def test_zone_count_keeps_items_located_elsewhere_and_drops_missing_ones() -> None:
    session = CountSession("c", frozenset({"floor"}), 0.0)
    session.read(epc(1), GTINS[0], "floor")
    located = [
        (epc(1), "SKU-0", "floor"),       # read now: counted once, from the read
        (epc(2), "SKU-0", "backroom"),    # elsewhere, not sold: still there
        (epc(3), "SKU-0", "backroom"),    # elsewhere but sold: gone
        (epc(4), "SKU-1", "floor"),       # located here, not read now: missing -> 0
        (epc(5), "SKU-2", "backroom"),    # elsewhere only, SKU not counted here: untouched
    ]
    result = tally(session.epcs, {epc(3)}, SKU_OF, located, session.zones)
    assert result.counted == {"SKU-0": 2, "SKU-1": 0}
    store_wide = tally(session.epcs, {epc(3)}, SKU_OF, located, None)
    assert store_wide.counted == {"SKU-0": 1, "SKU-1": 0, "SKU-2": 0}


def test_overflow_is_counted_not_kept() -> None:
    session = CountSession("c", None, 0.0, max_epcs=2)
    for n in range(4):
        session.read(epc(n), GTINS[0], "a")
    assert session.distinct == 2
    assert session.overflow == 2


def test_big_store_count_splits_into_parts_with_one_cut_off() -> None:
    session = CountSession("big", None, 0.0)
    gtins = [f"04{n:011d}" for n in range(LINES_PER_FACT + 10)]
    sku_of: dict[str, str | None] = {}
    for n, g in enumerate(gtins):
        g14 = g + "0"
        sku_of[g14] = f"S{n}"
        session.read(epc(n), g14, "a")
    result = tally(session.epcs, set(), sku_of)
    facts = count_facts("big", result, {}, counted_at="2026-11-25T10:00:00.000Z", zones=None,
                        session=session)
    assert [f.data["part"] for f in facts] == [1, 2]
    assert {f.data["counted_at"] for f in facts} == {"2026-11-25T10:00:00.000Z"}
    assert sum(len(f.data["lines"]) for f in facts) == LINES_PER_FACT + 10
    assert all(f.data["source"] == "rfid" and f.data["scope"] == "store" for f in facts)
    assert "zones" not in facts[0].data


def test_parse_epc_refuses_what_is_not_an_sgtin() -> None:
    tag = parse_epc("3074257bf7194e4000001a85", "x")
    assert tag.epc == "3074257BF7194E4000001A85"
    assert len(tag.gtin) == 14
    for bad in ("E28011700000020F1A2B3C4D", "zz", ""):
        with pytest.raises(OperationError) as err:
            parse_epc(bad, "lines[0]")
        assert err.value.code == "invalid_epc"
