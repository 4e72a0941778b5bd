"""Property: under interleaved online orders and in-store sales, central's ATP and brokering
(the pure functions it runs) never promise more than the network holds as far as central
knows; a unit is ever promised that a store does not have only because of sales the store
made offline, which central could not know of, and such oversells are counted.

The model: stores with physical stock; central's view (on hand it has heard of, what it
has promised); stores that go offline, keep selling from what they can see is free, and
report on their return; orders assigned to an offline store reach it on its return."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from central.atp import AtpPolicy, CellFacts, StoreFacts, oversold_units, store_atp
from central.brokering import Candidate, Request, broker

STORES = ("S1", "S2", "S3")
SKUS = ("A", "B")
PLACES = {"S1": (52.37, 4.90), "S2": (51.92, 4.48), "S3": (52.09, 5.12)}


@dataclass
class World:
    policy: AtpPolicy
    t: float = 0.0
    true: dict[tuple[str, str], int] = field(default_factory=dict)
    known: dict[tuple[str, str], int] = field(default_factory=dict)
    promised: dict[tuple[str, str], int] = field(default_factory=dict)  # central's reserve
    store_res: dict[tuple[str, str], int] = field(default_factory=dict)  # what stores know
    online: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(STORES, True))
    contact: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STORES, 0.0))
    unsent: dict[tuple[str, str], int] = field(default_factory=dict)
    inbox: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    offline_sold: dict[tuple[str, str], int] = field(default_factory=dict)
    heard_sold: dict[tuple[str, str], int] = field(default_factory=dict)
    promises: int = 0
    refused: int = 0

    def rate(self, cell: tuple[str, str]) -> float:
        return self.heard_sold.get(cell, 0) / max(self.t, 60.0)

    def order(self, sku: str, qty: int, near: str, may_split: bool) -> None:
        cands = []
        for store in STORES:
            silent = 0.0 if self.online[store] else self.t - self.contact[store]
            cell = (store, sku)
            atp = store_atp(self.policy, sku, StoreFacts(store, silent_for=silent),
                            CellFacts(self.known.get(cell, 0), self.promised.get(cell, 0),
                                      rate=self.rate(cell))).atp
            cands.append(Candidate(store, {sku: atp}, PLACES[store]))
        plan = broker(Request({sku: qty}, PLACES[near], may_split=may_split), cands)
        if plan is None:
            self.refused += 1
            return
        self.promises += 1
        for store, take in plan:
            cell = (store, sku)
            self.promised[cell] = self.promised.get(cell, 0) + take[sku]
            # central never promises beyond the stock it knows of
            assert self.promised[cell] <= self.known.get(cell, 0)
            if self.online[store]:
                self.store_res[cell] = self.store_res.get(cell, 0) + take[sku]
            else:
                self.inbox.setdefault(store, []).append((sku, take[sku]))

    def sale(self, store: str, sku: str, qty: int) -> None:
        cell = (store, sku)
        free = self.true.get(cell, 0) - self.store_res.get(cell, 0)
        n = min(qty, max(0, free))  # reserved units are set aside; the shelf has the rest
        if n <= 0:
            return
        self.true[cell] -= n
        if self.online[store]:
            self.known[cell] -= n
            self.heard_sold[cell] = self.heard_sold.get(cell, 0) + n
        else:
            self.unsent[cell] = self.unsent.get(cell, 0) + n
            self.offline_sold[cell] = self.offline_sold.get(cell, 0) + n

    def fulfil(self, store: str, sku: str) -> None:
        cell = (store, sku)
        qty = self.store_res.get(cell, 0)
        if not self.online[store] or qty <= 0 or self.true.get(cell, 0) < qty:
            return
        for book in (self.true, self.known, self.store_res, self.promised):
            book[cell] -= qty

    def set_online(self, store: str, online: bool) -> None:
        if online and not self.online[store]:
            for sku in SKUS:
                cell = (store, sku)
                n = self.unsent.pop(cell, 0)
                self.known[cell] = self.known.get(cell, 0) - n
                self.heard_sold[cell] = self.heard_sold.get(cell, 0) + n
            for sku, qty in self.inbox.pop(store, []):
                self.store_res[(store, sku)] = self.store_res.get((store, sku), 0) + qty
        if not online and self.online[store]:
            self.contact[store] = self.t
        self.online[store] = online

    def check(self) -> int:
        """Every oversold unit is explained by offline sales; returns the count."""
        total = 0
        for store in STORES:
            for sku in SKUS:
                cell = (store, sku)
                over = oversold_units(self.true.get(cell, 0), self.promised.get(cell, 0))
                assert over <= self.offline_sold.get(cell, 0), (cell, over)
                heard_over = max(0, self.promised.get(cell, 0) - self.known.get(cell, 0))
                learned = self.offline_sold.get(cell, 0) - self.unsent.get(cell, 0)
                assert heard_over <= learned, (cell, heard_over, learned)
                total += over
        network_known = sum(self.known.values())
        assert sum(self.promised.values()) <= network_known + sum(
            self.offline_sold.values())
        return total


store_ = st.sampled_from(STORES)
sku_ = st.sampled_from(SKUS)
ops = st.lists(st.one_of(
    st.tuples(st.just("order"), sku_, st.integers(1, 4), store_, st.booleans()),
    st.tuples(st.just("sale"), store_, sku_, st.integers(1, 5)),
    st.tuples(st.just("fulfil"), store_, sku_),
    st.tuples(st.just("online"), store_, st.booleans()),
    st.tuples(st.just("wait"), st.floats(1, 3600)),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(stock=st.lists(st.integers(0, 12), min_size=6, max_size=6), script=ops,
       staleness=st.booleans(), safety=st.integers(0, 2))
def test_network_never_promises_more_than_it_holds(stock: list[int], script: list[tuple],
                                                   staleness: bool, safety: int) -> None:
    policy = AtpPolicy(default_safety=safety, stale_after=600, silent_limit=4 * 3600,
                       staleness=staleness)
    world = World(policy)
    for index, (store, sku) in enumerate((s, k) for s in STORES for k in SKUS):
        world.true[(store, sku)] = world.known[(store, sku)] = stock[index]
    oversold = 0
    for op in script:
        kind = op[0]
        if kind == "order":
            world.order(op[1], op[2], op[3], op[4])
        elif kind == "sale":
            world.sale(op[1], op[2], op[3])
        elif kind == "fulfil":
            world.fulfil(op[1], op[2])
        elif kind == "online":
            world.set_online(op[1], op[2])
        else:
            world.t += op[1]
        oversold = world.check()
    if not any(world.offline_sold.values()):
        assert oversold == 0
