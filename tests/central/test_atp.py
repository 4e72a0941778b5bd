"""The ATP formula and the brokering rules, as pure functions."""

from __future__ import annotations

import pytest

from central.atp import AtpPolicy, CellFacts, StoreFacts, network_atp, store_atp
from central.brokering import Candidate, Request, broker, haversine_km

AMSTERDAM = (52.37, 4.90)
ROTTERDAM = (51.92, 4.48)
UTRECHT = (52.09, 5.12)


def test_haversine_known_distance() -> None:
    assert haversine_km(AMSTERDAM, ROTTERDAM) == pytest.approx(57.8, abs=0.5)
    assert haversine_km(AMSTERDAM, AMSTERDAM) == 0


def test_safety_stock_most_specific_wins_and_rfid_lowers_it() -> None:
    policy = AtpPolicy(default_safety=4, safety_by_sku={"A": 6}, safety_by_category={"c": 2},
                       rfid_factor=0.5, rfid_days=7)
    store = StoreFacts("S1", safety=3)
    assert store_atp(policy, "A", store, CellFacts(20, 0, category="c")).safety == 6
    assert store_atp(policy, "B", store, CellFacts(20, 0, category="c")).safety == 2
    assert store_atp(policy, "B", store, CellFacts(20, 0)).safety == 3
    assert store_atp(policy, "B", StoreFacts("S2"), CellFacts(20, 0)).safety == 4
    # a recent RFID count: half, rounded up; an old one: no effect
    assert store_atp(policy, "A", store, CellFacts(20, 0, rfid_age_days=1)).safety == 3
    assert store_atp(policy, "A", store, CellFacts(20, 0, rfid_age_days=8)).safety == 6


def test_formula_subtracts_reserved_safety_hold_and_staleness() -> None:
    policy = AtpPolicy(default_safety=1, stale_after=600, silent_limit=3600)
    fresh = StoreFacts("S1", silent_for=599)
    cell = CellFacts(on_hand=20, reserved=5, hold=2, rate=0.01)
    assert store_atp(policy, "A", fresh, cell).atp == 20 - 5 - 1 - 2
    stale = StoreFacts("S1", silent_for=1000)  # 0.01/s x 1000 s = 10 units probably sold
    result = store_atp(policy, "A", stale, cell)
    assert (result.stale, result.atp) == (10, 2)
    silent = store_atp(policy, "A", StoreFacts("S1", silent_for=3600), cell)
    assert (silent.atp, silent.excluded) == (0, "silent")
    off = AtpPolicy(default_safety=1, stale_after=600, silent_limit=3600, staleness=False)
    assert store_atp(off, "A", StoreFacts("S1", silent_for=10**6), cell).atp == 12
    assert store_atp(policy, "A", StoreFacts("S1", excluded="closed"), cell).atp == 0
    assert store_atp(policy, "A", fresh, CellFacts(on_hand=2, reserved=5)).atp == 0


def test_network_subtracts_queue_and_threshold() -> None:
    policy = AtpPolicy(network_threshold=3)
    cells = [store_atp(policy, "A", StoreFacts(s), CellFacts(n, 0)) for s, n in
             (("S1", 5), ("S2", 4))]
    assert network_atp(policy, cells) == 6
    assert network_atp(policy, cells, queued=2) == 4
    assert network_atp(policy, cells, queued=20) == 0


def test_broker_keeps_together_then_nearest() -> None:
    cands = [Candidate("AMS", {"A": 5, "B": 1}, AMSTERDAM),
             Candidate("RTM", {"A": 5, "B": 5}, ROTTERDAM),
             Candidate("UTR", {"A": 1, "B": 5}, UTRECHT)]
    near_ams = Request({"A": 2, "B": 2}, destination=(52.36, 4.89))
    # Amsterdam is nearest but cannot send both lines: Rotterdam keeps the order together
    assert broker(near_ams, cands) == [("RTM", {"A": 2, "B": 2})]
    assert broker(Request({"A": 2}, destination=(52.36, 4.89)), cands) == [("AMS", {"A": 2})]
    # without the together rule an unsplittable order still goes to one store, nearest first
    assert broker(near_ams, cands, ("proximity", "atp")) == [("RTM", {"A": 2, "B": 2})]


def test_broker_splits_only_where_allowed_and_fewest_parcels() -> None:
    cands = [Candidate("S1", {"A": 3}, AMSTERDAM), Candidate("S2", {"A": 4}, ROTTERDAM),
             Candidate("S3", {"A": 1}, UTRECHT)]
    assert broker(Request({"A": 6}, may_split=False), cands) is None
    plan = broker(Request({"A": 6}, destination=AMSTERDAM, may_split=True), cands)
    assert plan == [("S2", {"A": 4}), ("S1", {"A": 2})]
    assert broker(Request({"A": 9}, may_split=True), cands) is None
    no_split_rule = ("together", "proximity", "atp", "capacity")
    assert broker(Request({"A": 6}, may_split=True), cands, no_split_rule) is None


def test_broker_capacity_and_pickup() -> None:
    cands = [Candidate("S1", {"A": 5}, AMSTERDAM, capacity_left=0),
             Candidate("S2", {"A": 5}, ROTTERDAM, capacity_left=3),
             Candidate("S3", {"A": 5}, UTRECHT, capacity_left=9)]
    assert broker(Request({"A": 1}, destination=AMSTERDAM), cands) == [("S3", {"A": 1})]
    assert broker(Request({"A": 1}), cands, ("capacity",)) == [("S3", {"A": 1})]
    assert broker(Request({"A": 1}, pickup_store="S2"), cands) == [("S2", {"A": 1})]
    assert broker(Request({"A": 1}, pickup_store="S1"), cands) is None
    assert broker(Request({"A": 6}, pickup_store="S2", may_split=True), cands) is None
