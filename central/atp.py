"""Available-to-promise arithmetic (pure): what one store, and the network, may promise.

Per store ``s`` and SKU ``k``::

    atp(s, k) = max(0, on_hand - reserved - safety(s, k) - hold(s, k) - stale(s, k))
                or 0 when the store is excluded (closed, not fulfilling, over its daily
                order capacity) or silent longer than ``silent_limit``

    reserved   every open reservation, including the orders central brokered to the store
               and the store has not accepted yet: ``order.assign`` adds them to
               ``reserved`` the moment central issues it (and a timed-out assignment stays
               there until the store releases it), so they are taken away exactly once
    safety     the store's safety stock for the SKU: the SKU's own figure, else its
               category's, else the store's, else the default; multiplied by
               ``rfid_factor`` (rounded up) when the store's latest count of the SKU came
               from RFID within ``rfid_days``
    hold       the quantities the store rejected for that SKU since its last count
    stale      0 while the store's last contact is younger than ``stale_after``; then
               ceil(sell-through rate of the SKU at that store * seconds silent)

    network(k) = max(0, sum over s of atp(s, k) - queued(k) - network_threshold)

    queued     the quantities of the orders waiting in the unfillable queue

Nothing here reads a clock or a database: callers hand in the facts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AtpPolicy:
    """The configured knobs of the formula (see :mod:`central.omni_config`)."""

    default_safety: int = 0
    safety_by_sku: Mapping[str, int] = field(default_factory=dict)
    safety_by_category: Mapping[str, int] = field(default_factory=dict)
    rfid_factor: float = 0.5
    rfid_days: float = 7.0
    stale_after: float = 900.0
    silent_limit: float = 4 * 3600.0
    network_threshold: int = 0
    staleness: bool = True


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What central knows of one store as a whole."""

    store: str
    silent_for: float = 0.0
    excluded: str | None = None  # "closed", "not_fulfilling", "capacity" or None
    safety: int | None = None  # the store's own safety stock, if configured


@dataclass(frozen=True, slots=True)
class CellFacts:
    """What central knows of one SKU at one store."""

    on_hand: int
    reserved: int
    hold: int = 0
    rate: float = 0.0  # units sold per second, recently
    rfid_age_days: float | None = None  # age of the latest RFID count, if that was the last
    category: str | None = None


@dataclass(frozen=True, slots=True)
class StoreAtp:
    store: str
    sku: str
    atp: int
    on_hand: int
    reserved: int
    safety: int
    hold: int
    stale: int
    excluded: str | None

    def as_json(self) -> dict[str, object]:
        return {"store": self.store, "atp": self.atp, "on_hand": self.on_hand,
                "reserved": self.reserved, "safety": self.safety, "hold": self.hold,
                "stale": self.stale, "excluded": self.excluded}


def safety_stock(policy: AtpPolicy, sku: str, store: StoreFacts, cell: CellFacts) -> int:
    """Safety stock of one SKU at one store: most specific figure, RFID-reduced."""
    base = policy.safety_by_sku.get(sku)
    if base is None and cell.category is not None:
        base = policy.safety_by_category.get(cell.category)
    if base is None:
        base = store.safety if store.safety is not None else policy.default_safety
    if cell.rfid_age_days is not None and cell.rfid_age_days <= policy.rfid_days:
        base = math.ceil(base * policy.rfid_factor)
    return max(0, base)


def stale_units(policy: AtpPolicy, store: StoreFacts, cell: CellFacts) -> int:
    """Units the store has probably sold since central last heard from it."""
    if not policy.staleness or store.silent_for < policy.stale_after:
        return 0
    return math.ceil(max(0.0, cell.rate) * store.silent_for)


def excluded_reason(policy: AtpPolicy, store: StoreFacts) -> str | None:
    if store.excluded is not None:
        return store.excluded
    if policy.staleness and store.silent_for >= policy.silent_limit:
        return "silent"
    return None


def store_atp(policy: AtpPolicy, sku: str, store: StoreFacts, cell: CellFacts) -> StoreAtp:
    safety = safety_stock(policy, sku, store, cell)
    stale = stale_units(policy, store, cell)
    excluded = excluded_reason(policy, store)
    atp = 0 if excluded else max(0, cell.on_hand - cell.reserved - safety - cell.hold - stale)
    return StoreAtp(store.store, sku, atp, cell.on_hand, cell.reserved, safety, cell.hold,
                    stale, excluded)


def network_atp(policy: AtpPolicy, per_store: Iterable[StoreAtp], queued: int = 0) -> int:
    return max(0, sum(s.atp for s in per_store) - queued - policy.network_threshold)


def oversold_units(on_hand: int, committed: int) -> int:
    """Units promised to orders that the store does not physically have."""
    return max(0, committed - max(0, on_hand))
