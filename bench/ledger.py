"""Ledger write path against raw SQLite, in the same run.

Run: ``.venv/bin/python -m bench.ledger [--quick]``.

- **ceiling**: plain ``sqlite3`` ``executemany`` of a comparable event row (same columns,
  a ~250-byte canonical JSON payload), 1000 rows per transaction, WAL, ``synchronous=FULL``
  (and NORMAL, for reference);
- **ledger, concurrent callers**: many coroutines each awaiting ``ledger.write`` of one
  sale fact (validation, canonical JSON, seq, stock projection), group-committed, FULL;
- **ledger, batched op**: one op appending 1000 facts (the engine's own cost, no asyncio);
- **latency**: p50/p99 from ``ledger.write`` to its durable answer at 1,000 facts/s.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from edge_agent.ledger import AppendedEvent, Ledger, Tx

SALE = {
    "sale_id": "0b6f3a52-7d1e-4c1b-9a8e-3f0c2d9e8a11",
    "terminal": "T1",
    "lines": [{"sku": "A-100", "qty": 2, "unit_price": "1.95", "line_total": "3.90"}],
    "total": "3.90",
    "currency": "EUR",
    "payments": [{"method": "card", "amount": "3.90"}],
}


def sale_op(tx: Tx) -> AppendedEvent:
    return tx.append("sale", SALE, stock=[("A-100", -2)])


def raw_ceiling(directory: Path, rows: int, synchronous: str) -> float:
    path = directory / f"raw-{synchronous}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, epoch_ordinal INTEGER, seq INTEGER, "
        "event_id TEXT, type TEXT, ts TEXT, payload BLOB)"
    )
    payload = json.dumps({"seq": 1, "id": str(uuid.uuid4()), "type": "sale",
                          "ts": "2026-11-25T09:15:02.123Z", "data": SALE,
                          "stock": [{"sku": "A-100", "delta": -2}]},
                         sort_keys=True, separators=(",", ":")).encode()
    batch = 1000
    started = time.perf_counter()
    seq = 0
    while seq < rows:
        chunk = [((1 << 40) | s, 1, s, "id", "sale", "ts", payload)
                 for s in range(seq + 1, min(rows, seq + batch) + 1)]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", chunk)
        conn.execute("COMMIT")
        seq += len(chunk)
    elapsed = time.perf_counter() - started
    conn.close()
    return rows / elapsed


async def ledger_concurrent(ledger: Ledger, facts: int, callers: int) -> float:
    per_caller = facts // callers

    async def caller() -> None:
        for _ in range(per_caller):
            await ledger.write(sale_op)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return per_caller * callers / (time.perf_counter() - started)


def ledger_batched(ledger: Ledger, facts: int) -> float:
    def op(tx: Tx) -> None:
        for _ in range(1000):
            sale_op(tx)

    started = time.perf_counter()
    for _ in range(facts // 1000):
        ledger.write_blocking(op)
    return (facts // 1000) * 1000 / (time.perf_counter() - started)


async def ledger_latency(ledger: Ledger, rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def one() -> None:
        begun = time.perf_counter()
        await ledger.write(sale_op)
        latencies.append(time.perf_counter() - begun)

    interval = 1.0 / rate
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.get_running_loop().create_task(one()))
    await asyncio.gather(*tasks)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(quick: bool = False) -> dict[str, Any]:
    rows = 50_000 if quick else 300_000
    facts = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ceiling_full = raw_ceiling(directory, rows, "FULL")
        ceiling_normal = raw_ceiling(directory, rows, "NORMAL")
        with Ledger.open(directory / "ledger.db", "BENCH") as ledger:
            concurrent = asyncio.run(ledger_concurrent(ledger, facts, 64))
            batched = ledger_batched(ledger, facts)
            latencies = asyncio.run(ledger_latency(ledger, 1000.0, 3.0 if quick else 10.0))
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    return {
        "raw_executemany_full_rows_s": round(ceiling_full),
        "raw_executemany_normal_rows_s": round(ceiling_normal),
        "ledger_concurrent_facts_s": round(concurrent),
        "ledger_concurrent_ratio": round(concurrent / ceiling_full, 3),
        "ledger_batched_facts_s": round(batched),
        "ledger_batched_ratio": round(batched / ceiling_full, 3),
        "latency_at_1000_s_p50_ms": round(p50 * 1000, 2),
        "latency_at_1000_s_p99_ms": round(p99 * 1000, 2),
        "latency_samples": len(latencies),
        "latency_mean_ms": round(statistics.fmean(latencies) * 1000, 2),
    }


def main() -> None:
    figures = run(quick="--quick" in sys.argv)
    width = max(len(k) for k in figures)
    print("ledger benchmark (ceiling: raw sqlite3 executemany, 1000 rows/txn, FULL)")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    main()
