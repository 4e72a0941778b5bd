"""Order brokering (pure): which store(s) fulfil an order's open lines, by ordered rules.

Rules, in the configured order (default ``together, proximity, atp, capacity, split``):

- ``together``   prefer one store that can fill every open line (no split shipment);
- ``proximity``  nearer stores first (Haversine from the stores' coordinates to the
                 address; a store without coordinates sorts last);
- ``atp``        stores with more ATP of the order's SKUs first (inventory balance);
- ``capacity``   stores with more of their daily order capacity left first (a store with
                 none left is never a candidate, whatever the rule order);
- ``split``      when the order allows it, fill what no single store can from several
                 stores, the store covering most of what is still open first (fewest
                 parcels), ties broken by the rules above.

A pickup order is fulfilled at its pickup store only. Nothing is assigned unless the whole
order can be: an order the network cannot fill waits (the caller's unfillable queue).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

RULES = ("together", "proximity", "atp", "capacity", "split")
EARTH_RADIUS_KM = 6371.0088


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lat, lon) points in degrees."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class Candidate:
    store: str
    atp: Mapping[str, int]
    location: tuple[float, float] | None = None
    capacity_left: int | None = None  # orders it may still take today; None = unlimited


@dataclass(frozen=True, slots=True)
class Request:
    lines: Mapping[str, int]  # sku → open quantity
    destination: tuple[float, float] | None = None
    pickup_store: str | None = None
    may_split: bool = False


Plan = list[tuple[str, dict[str, int]]]


def _key_fn(rules: Sequence[str], request: Request
            ) -> Callable[[Candidate], tuple[float, ...]]:
    """The sort key of a candidate under ``rules`` (smaller sorts first), with the
    destination's trigonometry done once per order, not once per store."""
    dest = request.destination
    lat1 = lon1 = cos1 = 0.0
    if dest is not None:
        lat1, lon1 = math.radians(dest[0]), math.radians(dest[1])
        cos1 = math.cos(lat1)
    skus = list(request.lines)
    radians, sin, cos, asin, sqrt = math.radians, math.sin, math.cos, math.asin, math.sqrt

    def distance(cand: Candidate) -> float:
        if dest is None:
            return 0.0
        if cand.location is None:
            return math.inf
        lat2, lon2 = radians(cand.location[0]), radians(cand.location[1])
        h = sin((lat2 - lat1) / 2) ** 2 + cos1 * cos(lat2) * sin((lon2 - lon1) / 2) ** 2
        return 2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(h)))

    def balance(cand: Candidate) -> float:
        return -float(sum(cand.atp.get(sku, 0) for sku in skus))

    def capacity(cand: Candidate) -> float:
        return -(math.inf if cand.capacity_left is None else cand.capacity_left)

    parts = [{"proximity": distance, "atp": balance, "capacity": capacity}[rule]
             for rule in rules if rule in ("proximity", "atp", "capacity")]
    if len(parts) == 3:  # the usual case, without a generator per candidate
        a, b, c = parts
        return lambda cand: (a(cand), b(cand), c(cand))
    return lambda cand: tuple([part(cand) for part in parts])


def broker(request: Request, candidates: Sequence[Candidate],
           rules: Sequence[str] = RULES) -> Plan | None:
    """Assignments ``[(store, {sku: qty})]`` covering every open line, or None."""
    open_lines = {sku: qty for sku, qty in request.lines.items() if qty > 0}
    if not open_lines:
        return []
    pool = [c for c in candidates if c.capacity_left is None or c.capacity_left > 0]
    if request.pickup_store is not None:
        pool = [c for c in pool if c.store == request.pickup_store]
    key = _key_fn(rules, request)
    can_split = request.may_split and "split" in rules
    if "together" in rules or not can_split:
        whole = [c for c in pool
                 if all(c.atp.get(sku, 0) >= qty for sku, qty in open_lines.items())]
        if whole:
            best = min(whole, key=lambda c: (key(c), c.store))
            return [(best.store, dict(open_lines))]
    if not can_split:
        return None
    pool.sort(key=lambda c: (key(c), c.store))
    return _split(open_lines, pool, together="together" in rules)


def _split(open_lines: dict[str, int], pool: list[Candidate], *, together: bool) -> Plan | None:
    left = dict(open_lines)
    for sku, qty in left.items():
        if sum(max(0, c.atp.get(sku, 0)) for c in pool) < qty:
            return None
    plan: Plan = []
    remaining = list(pool)
    while any(left.values()):
        if together:  # fewest parcels: the store covering most of what is open next
            best = max(remaining, key=lambda c: sum(min(max(0, c.atp.get(s, 0)), q)
                                                    for s, q in left.items()))
        else:
            best = remaining[0]
        take = {s: min(max(0, best.atp.get(s, 0)), q) for s, q in left.items()}
        take = {s: q for s, q in take.items() if q > 0}
        remaining.remove(best)
        if not take:
            continue
        plan.append((best.store, take))
        for s, q in take.items():
            left[s] -= q
    return plan
