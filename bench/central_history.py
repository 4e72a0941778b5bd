"""Central's database size over a simulated month, bounded (7-day retention, pruned in
batches) against unbounded, fed the same events in the same run.

Both centrals are the real engine (:class:`central.core.Core`) on SQLite files; a simulated
day is a fixed number of sale/receipt events per store, in batches. At each day's end the
projection is flushed, the bounded central prunes what was received more than seven
simulated days ago (:func:`central.history.compact_batch`, timed per transaction: the
longest is the most its writer could wait on SQLite's write lock), and both files are
measured after a WAL checkpoint. SQLite reuses freed pages, so a bounded file plateaus
rather than shrinks. At the end the two centrals must agree on stock and digest, and an
old batch resent to the bounded one must be a duplicate with no conflict alert.

``python -m bench.central_history [--quick|--tiny]``; in the suite, ``--only central_history``.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.common import Row, scratch_dir
from central.core import Core, Inbound
from central.history import candidates, compact_batch
from central.storage import Connection, Database
from sync.messages import Digest
from sync.wire import now_ts

DAYS = 30
RETENTION_DAYS = 7
BATCH = 50
SKUS = 300


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _batches(store: str, epoch: str, first: int, count: int, day: int) -> list[bytes]:
    out = []
    for start in range(first, first + count, BATCH):
        events = []
        for seq in range(start, min(start + BATCH, first + count)):
            receipt = seq % 10 == 0
            events.append({
                "seq": seq, "id": f"{store}-{epoch[:8]}-{seq}",
                "type": "receipt" if receipt else "sale",
                "ts": f"2026-11-{day + 1:02d}T10:00:00.000Z",
                "data": {"till": "T1", "lines": 1},
                "stock": [{"sku": f"SKU-{seq * 7 % SKUS:04d}", "delta": 9 if receipt else -1}],
                "reserve": []})
        out.append(orjson.dumps({"v": 1, "store": store, "epoch": epoch, "events": events}))
    return out


def _prune(conn: Connection, cutoff: str, batch_runs: int) -> tuple[int, float, int]:
    """(events pruned, longest transaction in seconds, transactions)."""
    epochs = candidates(conn)
    events = 0
    longest = 0.0
    transactions = 0
    while epochs:
        started = time.perf_counter()
        _, pruned = compact_batch(conn, cutoff, batch_runs, epochs)
        longest = max(longest, time.perf_counter() - started)
        events += pruned
        transactions += 1
    return events, longest, transactions


def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    stores = 5 if tiny else 10 if quick else 20
    per_day = 100 if tiny else 400 if quick else 1000
    with scratch_dir("bench-central-history-") as work:
        paths = {"unbounded": work / "unbounded.db", "bounded": work / "bounded.db"}
        cores: dict[str, Core] = {}
        for name, path in paths.items():
            db = Database(f"sqlite:///{path}")
            db.create_schema()
            cores[name] = Core(db.connect())
        pruner = Database(f"sqlite:///{paths['bounded']}").connect()
        epochs = {f"H{i:04d}": str(uuid.uuid4()) for i in range(stores)}
        day_end: list[str] = []
        sizes: dict[str, list[int]] = {"unbounded": [], "bounded": []}
        apply_s = {"unbounded": 0.0, "bounded": 0.0}
        prune_s = 0.0
        pruned = transactions = 0
        longest = 0.0
        first_day_batch: tuple[str, bytes] | None = None
        for day in range(DAYS):
            messages = []
            for store, epoch in epochs.items():
                topic = f"retail/v1/stores/{store}/events"
                messages.extend(Inbound(topic, payload, False) for payload in
                                _batches(store, epoch, day * per_day + 1, per_day, day))
            if first_day_batch is None:
                first_day_batch = (messages[0].topic, messages[0].payload)
            for name, core in cores.items():
                started = time.perf_counter()
                for start in range(0, len(messages), 100):
                    core.process(messages[start:start + 100])
                core.flush_projection()
                apply_s[name] += time.perf_counter() - started
            time.sleep(0.002)  # the next day's events are received strictly later
            day_end.append(now_ts())
            if day >= RETENTION_DAYS:
                started = time.perf_counter()
                n, batch_longest, batches = _prune(pruner, day_end[day - RETENTION_DAYS], 200)
                prune_s += time.perf_counter() - started
                pruned += n
                transactions += batches
                longest = max(longest, batch_longest)
            for name, core in cores.items():
                core.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                sizes[name].append(_size(paths[name]))
        figures = _verify(cores, epochs, first_day_batch)
        for core in cores.values():
            core.conn.close()
        pruner.close()
    total = stores * per_day * DAYS
    mib = 1024 * 1024
    return {
        "stores": stores, "events_per_store_day": per_day, "days": DAYS,
        "retention_days": RETENTION_DAYS, "events": total,
        "unbounded_mib": sizes["unbounded"][-1] / mib,
        "bounded_mib": sizes["bounded"][-1] / mib,
        "ratio_bounded_vs_unbounded": sizes["bounded"][-1] / sizes["unbounded"][-1],
        # plateau: the bounded file at day 30 against its size at day 15
        "bounded_growth_day15_to_30": sizes["bounded"][-1] / sizes["bounded"][14],
        "unbounded_growth_day15_to_30": sizes["unbounded"][-1] / sizes["unbounded"][14],
        "bounded_mib_by_day": [round(s / mib, 2) for s in sizes["bounded"]],
        "unbounded_mib_by_day": [round(s / mib, 2) for s in sizes["unbounded"]],
        "pruned_events": pruned, "prune_transactions": transactions,
        "longest_prune_tx_ms": longest * 1000,
        "prune_share_of_apply": prune_s / apply_s["bounded"],
        "apply_events_per_s_bounded": total / apply_s["bounded"],
        "apply_events_per_s_unbounded": total / apply_s["unbounded"],
        **figures,
        "loadavg_1m": os.getloadavg()[0],
    }


def _verify(cores: dict[str, Core], epochs: dict[str, str],
            old: tuple[str, bytes] | None) -> dict[str, Any]:
    bounded, unbounded = cores["bounded"], cores["unbounded"]
    stock = "SELECT store, sku, on_hand, reserved FROM stock ORDER BY store, sku"
    same_stock = bounded.conn.execute(stock) == unbounded.conn.execute(stock)
    same_digest = True
    for store, epoch in epochs.items():
        applied = unbounded.applied[(store, epoch)]
        probe = Digest.model_validate({"v": 1, "store": store, "epoch": epoch,
                                       "through_seq": applied, "through_cseq": 0, "skus": 0,
                                       "sha256": "0" * 64})
        if bounded.central_digest(store, probe) != unbounded.central_digest(store, probe):
            same_digest = False
    duplicates_before = bounded.counters().events_duplicate
    if old is not None:
        bounded.process([Inbound(old[0], old[1], False)])
    conflicts = bounded.conn.execute("SELECT COUNT(*) FROM alerts WHERE kind = 'event_conflict'")
    if not (same_stock and same_digest):
        raise AssertionError(f"bounded central differs: stock {same_stock}, "
                             f"digest {same_digest}")
    return {"same_stock": same_stock, "same_digest": same_digest,
            "old_resend_duplicates": bounded.counters().events_duplicate - duplicates_before,
            "old_resend_conflicts": int(conflicts[0][0])}


def rows(f: dict[str, Any]) -> list[Row]:
    g = "central history"
    note = (f"{f['stores']} stores x {f['events_per_store_day']} events/day x {f['days']} days, "
            f"{f['retention_days']}-day retention")
    return [
        Row(g, "database after a month, bounded", f["bounded_mib"], "MiB",
            f["unbounded_mib"], "unbounded, same events", "plateaus (≤ 1.1x day 15)",
            f["bounded_growth_day15_to_30"] <= 1.1, note=note),
        Row(g, "bounded growth day 15 → 30", f["bounded_growth_day15_to_30"], "x",
            f["unbounded_growth_day15_to_30"], "unbounded growth"),
        Row(g, "longest prune transaction (writer's worst wait)", f["longest_prune_tx_ms"], "ms",
            note=f"{f['prune_transactions']} transactions of ≤ 200 runs"),
        Row(g, "apply rate with pruning", f["apply_events_per_s_bounded"], "events/s",
            f["apply_events_per_s_unbounded"], "without pruning",
            note=f"pruning cost {f['prune_share_of_apply']:.1%} of apply time"),
    ]


def main() -> None:
    f = run(quick="--quick" in sys.argv[1:], tiny="--tiny" in sys.argv[1:])
    print(f"load average (1 min): {f['loadavg_1m']:.2f}")
    print(f"{f['stores']} stores x {f['events_per_store_day']} events/day x {f['days']} days "
          f"= {f['events']:,} events; retention {f['retention_days']} days")
    print(f"{'day':>4}{'unbounded MiB':>16}{'bounded MiB':>14}")
    for day, (u, b) in enumerate(zip(f["unbounded_mib_by_day"], f["bounded_mib_by_day"],
                                     strict=True), 1):
        print(f"{day:>4}{u:>16.2f}{b:>14.2f}")
    print(f"after a month: bounded {f['bounded_mib']:.1f} MiB vs unbounded "
          f"{f['unbounded_mib']:.1f} MiB (ratio {f['ratio_bounded_vs_unbounded']:.2f}); "
          f"growth day 15→30: bounded {f['bounded_growth_day15_to_30']:.2f}x, unbounded "
          f"{f['unbounded_growth_day15_to_30']:.2f}x")
    print(f"pruned {f['pruned_events']:,} events in {f['prune_transactions']} transactions, "
          f"longest {f['longest_prune_tx_ms']:.1f} ms; pruning = "
          f"{f['prune_share_of_apply']:.1%} of apply time")
    print(f"apply: {f['apply_events_per_s_bounded']:,.0f} events/s bounded, "
          f"{f['apply_events_per_s_unbounded']:,.0f} unbounded")
    print(f"same stock {f['same_stock']}, same digest {f['same_digest']}; an old batch resent: "
          f"{f['old_resend_duplicates']} duplicates, {f['old_resend_conflicts']} conflicts")


if __name__ == "__main__":
    main()
