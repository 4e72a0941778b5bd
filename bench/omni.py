"""The omnichannel loop: a simulated trading day of 1,000 stores x 10,000 SKUs.

Run: ``.venv/bin/python -m bench.omni [--quick]`` (or ``python -m bench --only omni``).

Four figures, each beside its naive alternative or ceiling, measured in the same run:

- **brokering decisions/s**: each online order of the day goes through the central's own
  pure code (:func:`central.atp.store_atp` for every store holding the SKU, then
  :func:`central.brokering.broker` with the default rules). Ceiling: a bare scan of the
  same arrays for the nearest store with on hand - reserved >= qty (no safety stock, no
  staleness, no rules).
- **ATP query p99**: ``OmniState.read_atp`` for one SKU across 1,000 stores, on a fresh
  read connection each time as the HTTP route does, against a SQLite database of the stock
  table. Ceiling: the bare ``SELECT … WHERE sku = ?`` on a fresh connection.
- **online oversell rate**: the same day (same seed: the same sales, orders and outages)
  brokered with and without staleness discounting. 10 % of the stores lose their link once
  for 1-6 hours and go on selling; central hears those sales only when they come back.
  Oversold = units promised to online orders that the store no longer had.

- **ingest cost**: the central's apply of 1000-sale batches with the order engine
  watching (sell-through counting, the feed), against the same core without it.

The day: 12 trading hours; in-store sales drawn from a Zipf-like SKU popularity; stock of
0-8 units per SKU per store; online orders of 1-2 units shipped to a point near a random
store. Stores set reserved units aside (an in-store sale cannot take them) once they know
of the order; an offline store learns of its orders when it returns.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import sys
import tempfile
import time
import uuid
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.common import Row, percentile
from central.atp import AtpPolicy, CellFacts, StoreFacts, store_atp
from central.brokering import Candidate, Request, broker, haversine_km
from central.core import Core
from central.omni_config import OmniSettings
from central.omni_state import OmniState
from central.orders import OmniEngine
from central.orders_db import create_tables
from central.storage import Database

DAY_S = 12 * 3600
STALE_AFTER = 900.0
SILENT_LIMIT = 4 * 3600.0


@dataclass
class Day:
    stores: int
    skus: int
    sales: int
    orders: int
    seed: int = 15
    places: list[tuple[float, float]] = field(default_factory=list)


def _places(n: int, rng: random.Random) -> list[tuple[float, float]]:
    return [(rng.uniform(50.8, 53.4), rng.uniform(3.4, 7.2)) for _ in range(n)]


def simulate(day: Day, *, staleness: bool) -> dict[str, float]:
    """One day; the same seed gives the same sales, orders and outages either way."""
    rng = random.Random(day.seed)
    n_st, n_sku = day.stores, day.skus
    places = day.places or _places(n_st, rng)
    nine = bytes(b % 9 for b in range(256))
    true = [array("h", array("B", rng.randbytes(n_st).translate(nine)))
            for _ in range(n_sku)]  # 0-8 units per SKU per store
    known = [array("h", row) for row in true]
    reserved = [array("h", bytes(2 * n_st)) for _ in range(n_sku)]  # central's promises
    aside = [array("h", bytes(2 * n_st)) for _ in range(n_sku)]  # what stores know of
    weights = list(itertools.accumulate(1.0 / (i + 1) for i in range(n_sku)))
    outage: dict[int, tuple[float, float]] = {}
    for store in rng.sample(range(n_st), n_st // 10):
        start = rng.uniform(0, DAY_S - 3600)
        outage[store] = (start, min(DAY_S, start + rng.uniform(3600, 6 * 3600)))
    unsent: dict[int, list[tuple[int, int]]] = {}
    inbox: dict[int, list[tuple[int, int]]] = {}
    heard: dict[tuple[int, int], int] = {}
    policy = AtpPolicy(stale_after=STALE_AFTER, silent_limit=SILENT_LIMIT,
                       staleness=staleness)
    events = sorted([(rng.uniform(0, DAY_S), 0) for _ in range(day.sales)]
                    + [(rng.uniform(0, DAY_S), 1) for _ in range(day.orders)])
    promised = refused = decisions = 0
    broker_s = bare_s = 0.0
    bare_agree = 0
    offline: set[int] = set()
    changes = sorted([(start, store, True) for store, (start, _) in outage.items()]
                     + [(end, store, False) for store, (_, end) in outage.items()])
    next_change = 0
    for now, kind in events:
        while next_change < len(changes) and changes[next_change][0] <= now:
            _, store, down = changes[next_change]  # a link goes down, or comes back
            next_change += 1
            if down:
                offline.add(store)
                continue
            offline.discard(store)
            for sku, n in unsent.pop(store, []):
                known[sku][store] -= n
                heard[(store, sku)] = heard.get((store, sku), 0) + n
            for sku, n in inbox.pop(store, []):
                aside[sku][store] += n
        sku = rng.choices(range(n_sku), cum_weights=weights)[0]
        if kind == 0:  # an in-store sale of what the shelf has
            store = rng.randrange(n_st)
            if true[sku][store] - aside[sku][store] <= 0:
                continue
            true[sku][store] -= 1
            if store in offline:
                unsent.setdefault(store, []).append((sku, 1))
            else:
                known[sku][store] -= 1
                heard[(store, sku)] = heard.get((store, sku), 0) + 1
            continue
        qty = 1 + (rng.random() < 0.2)
        near = places[rng.randrange(n_st)]
        dest = (near[0] + rng.uniform(-0.05, 0.05), near[1] + rng.uniform(-0.05, 0.05))
        t0 = time.perf_counter()
        cands = []
        k_row, r_row = known[sku], reserved[sku]
        for store in range(n_st):
            on, res = k_row[store], r_row[store]
            if on - res <= 0:
                continue
            silent = now - outage[store][0] if store in offline else 0.0
            rate = heard.get((store, sku), 0) / max(now, 3600.0)
            cell = store_atp(policy, "k", StoreFacts(str(store), silent_for=silent),
                             CellFacts(on, res, rate=rate))
            if cell.atp > 0:
                cands.append(Candidate(str(store), {"k": cell.atp}, places[store]))
        plan = broker(Request({"k": qty}, dest), cands)
        t1 = time.perf_counter()
        best, best_d = -1, math.inf  # the bare scan: nearest store with free stock
        for store in range(n_st):
            if k_row[store] - r_row[store] >= qty:
                d = haversine_km(dest, places[store])
                if d < best_d:
                    best, best_d = store, d
        bare_s += time.perf_counter() - t1
        broker_s += t1 - t0
        decisions += 1
        if plan is None:
            refused += 1
            continue
        store = int(plan[0][0])
        bare_agree += store == best
        promised += qty
        reserved[sku][store] += qty
        if store in offline:
            inbox.setdefault(store, []).append((sku, qty))
        else:
            aside[sku][store] += qty
    oversold = sum(max(0, reserved[k][s] - max(0, true[k][s]))
                   for k in range(n_sku) for s in range(n_st) if reserved[k][s])
    return {"decisions": decisions, "decisions_per_s": decisions / broker_s,
            "bare_scan_per_s": decisions / bare_s, "promised_units": promised,
            "refused_orders": refused, "oversold_units": oversold,
            "oversell_rate": oversold / promised if promised else 0.0,
            "same_store_as_bare": bare_agree / max(1, decisions - refused)}


def atp_queries(stores: int, skus: int, queries: int) -> dict[str, float]:
    """p50/p99 of one-SKU network ATP reads, beside the bare SQL read of the same rows."""
    rng = random.Random(3)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'central.db'}")
        db.create_schema()
        conn = db.connect()
        create_tables(conn)
        t0 = time.perf_counter()
        conn.begin_write()
        for s in range(stores):
            conn.executemany("INSERT INTO stock (store, sku, on_hand, reserved) VALUES "
                             "(?, ?, ?, 0)", [(f"S{s:04d}", f"K-{k:05d}", rng.randrange(9))
                                              for k in range(skus)])
        conn.execute("INSERT INTO stores (store) SELECT DISTINCT store FROM stock")
        conn.commit()
        build_s = time.perf_counter() - t0
        conn.close()
        state = OmniState(OmniSettings(stale_after=STALE_AFTER))
        now = time.time()
        for s in range(stores):  # a tenth of the stores silent for an hour
            state.contact[f"S{s:04d}"] = now - (3600 if s % 10 == 0 else 0)
            state.sold(f"S{s:04d}", {f"K-{s % skus:05d}": 3}, now - 3600)
        picks = [f"K-{rng.randrange(skus):05d}" for _ in range(queries)]
        omni_ms, bare_ms = [], []
        for sku in picks:
            t = time.perf_counter()
            with db.reading() as read:
                state.read_atp(read, [sku], None, detail=False)
            omni_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            with db.reading() as read:
                read.execute("SELECT store, sku, on_hand, reserved FROM stock WHERE sku = ?",
                             (sku,))
            bare_ms.append((time.perf_counter() - t) * 1000)
    return {"rows": stores * skus, "build_s": build_s,
            "p50_ms": percentile(omni_ms, 0.5), "p99_ms": percentile(omni_ms, 0.99),
            "bare_p50_ms": percentile(bare_ms, 0.5), "bare_p99_ms": percentile(bare_ms, 0.99)}


def _sales_batch(epoch: str, first: int, n: int) -> bytes:
    events = [{"seq": first + i, "id": f"e{first + i}", "type": "sale",
               "ts": "2026-12-04T10:00:00.000Z",
               "data": {"sale_id": f"s{first + i}",
                        "lines": [{"sku": f"SKU-{(first + i) % 5000:05d}", "qty": 1}]},
               "stock": [{"sku": f"SKU-{(first + i) % 5000:05d}", "delta": -1}],
               "reserve": []} for i in range(n)]
    return orjson.dumps({"v": 1, "store": "S001", "epoch": epoch, "events": events})


def ingest_cost(batches: int, repeat: int) -> dict[str, float]:
    """The order engine's cost on the ingest hot path: ``Core.process`` of 1000-sale
    batches (10 per group) with the engine watching, against the same core without it;
    alternated, best of ``repeat`` each (in process, no broker)."""
    def once(watch: bool) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            db = Database(f"sqlite:///{Path(tmp) / 'c.db'}")
            db.create_schema()
            engine = OmniEngine(OmniSettings()) if watch else None
            core = Core(db.connect(), watcher=engine)
            if engine is not None:
                engine.attach(core.conn)
            epoch = str(uuid.uuid4())
            messages = [("retail/v1/stores/S001/events",
                         _sales_batch(epoch, 1 + i * 1000, 1000), False)
                        for i in range(batches)]
            started = time.perf_counter()
            for i in range(0, batches, 10):
                core.process(messages[i:i + 10])
            core.flush_projection()
            seconds = time.perf_counter() - started
            core.conn.close()
            return batches * 1000 / seconds

    bare, watched = [], []
    for _ in range(repeat):
        bare.append(once(watch=False))
        watched.append(once(watch=True))
    return {"with_engine_events_per_s": max(watched), "without_events_per_s": max(bare)}


def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    if tiny:
        day = Day(stores=200, skus=1000, sales=20_000, orders=300)
        query = (200, 200, 100)
    elif quick:
        day = Day(stores=1000, skus=10_000, sales=150_000, orders=1000)
        query = (1000, 200, 300)
    else:
        day = Day(stores=1000, skus=10_000, sales=600_000, orders=3000)
        query = (1000, 1000, 500)
    day.places = _places(day.stores, random.Random(day.seed))
    out: dict[str, Any] = {"stores": day.stores, "skus": day.skus, "sales": day.sales,
                           "orders": day.orders}
    out["staleness_on"] = simulate(day, staleness=True)
    out["staleness_off"] = simulate(day, staleness=False)
    out["atp_query"] = atp_queries(*query)
    out["ingest"] = ingest_cost(10 if tiny else 50, 3 if tiny else 5)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


def rows(f: dict[str, Any]) -> list[Row]:
    g = "omni"
    on, off, q = f["staleness_on"], f["staleness_off"], f["atp_query"]
    shape = f"{f['stores']:,} stores x {f['skus']:,} SKUs"
    load = f"load {f['load_average'][0]}"
    return [
        Row(g, f"brokering decisions, {shape}", on["decisions_per_s"], "/s",
            on["bare_scan_per_s"], "bare nearest-free-stock scan",
            note=f"{on['decisions']:,} orders; {load}"),
        Row(g, f"ATP query, 1 SKU across {f['stores']:,} stores, p99", q["p99_ms"], "ms",
            q["bare_p99_ms"], "bare SELECT of the same rows",
            target="≤ 100 ms", met=q["p99_ms"] <= 100,
            note=f"p50 {q['p50_ms']:.2f} ms, {q['rows']:,} stock rows; {load}"),
        Row(g, "online oversell rate, staleness discounting on", on["oversell_rate"] * 100, "%",
            off["oversell_rate"] * 100, "same day, discounting off",
            target="below off", met=on["oversell_rate"] <= off["oversell_rate"],
            note=(f"{on['oversold_units']}/{on['promised_units']} units vs "
                  f"{off['oversold_units']}/{off['promised_units']}; refused "
                  f"{on['refused_orders']} vs {off['refused_orders']}")),
        Row(g, "core apply of 1000-sale batches, the order engine watching",
            f["ingest"]["with_engine_events_per_s"], "ev/s",
            f["ingest"]["without_events_per_s"], "the same core without it",
            note=f"in process, best of 5 alternated; {load}"),
    ]


def main() -> None:
    figures = run(quick="--quick" in sys.argv[1:], tiny="--tiny" in sys.argv[1:])
    for row in rows(figures):
        ratio = f"{row.ratio:.3g}x" if row.ratio is not None else "-"
        print(f"{row.name:<58} {row.value:>12.4g} {row.unit:<3} ceiling {row.ceiling:>10.4g}"
              f" ({row.ceiling_name}) ratio {ratio}  {row.note}")
    print(figures)


if __name__ == "__main__":
    main()
