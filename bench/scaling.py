"""Scaling curves: drain time against backlog size, ledger write rate against catalog size.

Run: ``.venv/bin/python -m bench.scaling [--quick]``.

- **drain**: backlogs of 10k, 100k and 1M events (10k, 100k quick) built offline with the
  ledger's batched ops, each drained by the store's sync through a fresh private
  mosquitto to the reference central (bench.sync's ``central`` and ``drain``; its
  in-bench applier when the reference central does not start). Ceiling at each size: the
  ledger read rate of the same backlog (bench.sync's ``read_ceiling``). Target: linear,
  no superlinear step — each step's time at most 1.5 times the time scaled linearly from the
  step before.
- **catalog size**: a ledger holding 10k, 100k and 1M SKUs (catalog rows, their GTINs and
  stock rows), then sale facts on random SKUs written by 64 concurrent callers: GTIN →
  SKU and price looked up inside the op (as a scan-driven sale does), one stock delta.
  Ceiling: the same lookups, event insert and stock update in raw ``sqlite3`` on the same
  file, 1000 per transaction, ``synchronous=FULL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BACKLOG_STORE,
    Row,
    build_backlog,
    print_rows,
    running_broker,
    scratch_dir,
)
from edge_agent.config import Config
from edge_agent.ledger import Ledger, Tx
from edge_agent.sync_adapter import LedgerStorePort
from edge_agent.sync_link import sync_settings
from sync.store import StoreSync
from sync.store_settings import SyncSettings

STEP_SLACK = 1.5
BIG_CACHE_KIB = 16 * 1024
CALLERS = 64


def _sizes(quick: bool, tiny: bool) -> dict[str, Any]:
    if tiny:
        return {"drain": [1_000, 3_000], "skus": [1_000, 3_000], "facts": 500}
    if quick:
        return {"drain": [10_000, 100_000], "skus": [10_000, 100_000], "facts": 5_000}
    return {"drain": [10_000, 100_000, 1_000_000], "skus": [10_000, 100_000, 1_000_000],
            "facts": 20_000}


# --------------------------------------------------------------------------- drain
def _copy_ledger(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    for part in source.parent.glob(source.name + "*"):
        if not part.name.endswith(".lock"):
            shutil.copyfile(part, target.parent / part.name.replace(source.name, target.name))


def agent_sync_settings(broker_url: str) -> SyncSettings:
    """The sync settings the agent itself would use (its defaults), through its own mapping."""
    config = Config.model_validate({
        "store": {"id": BACKLOG_STORE},
        "mqtt": {"url": broker_url, "password_credential": ""},
        "central": {"token_credential": ""},
        "sync": {"digest_interval_s": 3600, "health_interval_s": 3600},
    })
    return sync_settings(config)


async def drain_sampled(db: Path, broker_url: str, n: int, epoch: str,
                        every: float = 0.02) -> dict[str, Any]:
    """Drain ``db`` to the central; the clock stops at the ack of the last event.

    Progress (events acknowledged) is sampled every ``every`` seconds, so the rate of the
    last quarter of the backlog can be set against the first quarter of the same drain.
    """
    ledger = Ledger.open(db, BACKLOG_STORE)
    try:
        store_sync = StoreSync(agent_sync_settings(broker_url), LedgerStorePort(ledger))
        samples: list[tuple[float, int]] = [(0.0, 0)]
        started = time.perf_counter()
        task = asyncio.create_task(store_sync.run(), name="bench.scaling.store-sync")
        try:
            while samples[-1][1] < n:
                if task.done():
                    task.result()
                    raise RuntimeError("store sync stopped before the backlog drained")
                await asyncio.sleep(every)
                samples.append((time.perf_counter() - started,
                                store_sync.machine.base(epoch) or 0))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        seconds = samples[-1][0]
        return {"seconds": seconds, "events_per_s": n / seconds,
                "quarter_rates": _quarter_rates(samples, n)}
    finally:
        ledger.close()


def _quarter_rates(samples: list[tuple[float, int]], n: int) -> list[float]:
    """Events/s over each quarter of the backlog (interpolated crossing times)."""

    def when(count: float) -> float:
        for (t0, c0), (t1, c1) in itertools.pairwise(samples):
            if c1 >= count:
                return t0 + (t1 - t0) * ((count - c0) / (c1 - c0) if c1 > c0 else 1.0)
        return samples[-1][0]

    marks = [when(n * q / 4) for q in range(5)]
    return [(n / 4) / max(1e-9, b - a) for a, b in itertools.pairwise(marks)]


async def _drain_one(work: Path, n: int, kind: str, repeat: int) -> dict[str, Any]:
    """Median of ``repeat`` drains of copies of one backlog, each to a fresh broker/central."""
    from bench import sync as bsync  # noqa: PLC0415 - another helper's module; failures are reported

    pristine = work / f"drain-{n}" / "pristine" / "ledger.db"
    build_rate = await asyncio.to_thread(build_backlog, pristine, n, BACKLOG_STORE)
    with Ledger.open(pristine, BACKLOG_STORE) as ledger:
        epoch = ledger.current_epoch
    ceiling = await asyncio.to_thread(bsync.read_ceiling, pristine, 1000, 1024 * 1024 - 512)
    runs: list[dict[str, Any]] = []
    for k in range(repeat):
        db = work / f"drain-{n}" / f"run-{k}" / "ledger.db"
        await asyncio.to_thread(_copy_ledger, pristine, db)
        with running_broker(work / f"drain-{n}" / f"broker-{k}") as broker:
            central_dir = work / f"drain-{n}" / f"central-{k}"
            central_dir.mkdir(parents=True, exist_ok=True)
            async with bsync.central(kind, central_dir, broker.port):
                runs.append(await asyncio.wait_for(drain_sampled(db, broker.url, n, epoch),
                                                   timeout=max(120.0, n / 2000)))
        shutil.rmtree(db.parent, ignore_errors=True)
    runs.sort(key=lambda r: float(r["seconds"]))
    middle = runs[len(runs) // 2]
    quarters = middle["quarter_rates"]
    return {"events": n, "seconds": middle["seconds"], "events_per_s": middle["events_per_s"],
            "seconds_all": [r["seconds"] for r in runs], "quarter_rates": quarters,
            "last_vs_first_quarter": quarters[-1] / quarters[0] if quarters[0] else None,
            "ceiling_read_events_per_s": ceiling, "build_events_per_s": build_rate}


async def drain_curve(work: Path, sizes: list[int], central: str = "auto") -> dict[str, Any]:
    kind = "reference" if central in ("auto", "reference") else "in-bench"
    points: list[dict[str, Any]] = []
    fallback = ""
    for n in sizes:
        repeat = 3 if n <= 100_000 else 1  # short drains are the noisiest
        try:
            points.append(await _drain_one(work, n, kind, repeat))
        except Exception as exc:
            if kind != "reference" or central == "reference" or points:
                raise
            fallback = f"reference central unusable ({type(exc).__name__}: {exc})"
            kind = "in-bench"
            points.append(await _drain_one(work / "retry", n, kind, repeat))
    for before, after in itertools.pairwise(points):
        linear = before["seconds"] * after["events"] / before["events"]
        after["step_vs_linear"] = after["seconds"] / linear
    return {"central": kind, "fallback": fallback, "points": points}


# --------------------------------------------------------------------------- catalog size
def _gtin(i: int) -> str:
    return f"{2_000_000_000_000 + i:014d}"


def _sku(i: int) -> str:
    return f"SKU-{i:07d}"


def populate(ledger: Ledger, skus: int, chunk: int = 50_000) -> None:
    """``skus`` catalog rows, one GTIN each and a stock row each, in a few big ops."""
    for base in range(0, skus, chunk):
        span = range(base, min(skus, base + chunk))

        def op(tx: Tx, span: range = span) -> None:
            tx.executemany("INSERT INTO catalog (sku, name, price, currency) VALUES (?, ?, ?, ?)",
                           [(_sku(i), f"Item {i}", f"{1 + i % 50}.99", "EUR") for i in span])
            tx.executemany("INSERT INTO catalog_gtins (gtin, sku) VALUES (?, ?)",
                           [(_gtin(i), _sku(i)) for i in span])
            tx.executemany("INSERT INTO stock (sku, on_hand, reserved) VALUES (?, ?, 0)",
                           [(_sku(i), 1000) for i in span])

        ledger.write_blocking(op)


def sale_on(tx: Tx, i: int) -> None:
    """A scanned one-line sale: GTIN → SKU → price, one fact with its stock delta."""
    sku = str(tx.query("SELECT sku FROM catalog_gtins WHERE gtin = ?", (_gtin(i),))[0][0])
    price = str(tx.query("SELECT price FROM catalog WHERE sku = ?", (sku,))[0][0])
    tx.append("sale", {"sale_id": f"k{i}-{time.monotonic_ns()}", "terminal": "T1",
                       "lines": [{"sku": sku, "qty": 1, "unit_price": price,
                                  "line_total": price}],
                       "total": price, "currency": "EUR",
                       "payments": [{"method": "cash", "amount": price}]},
              stock=[(sku, -1)])


async def ledger_writes(ledger: Ledger, skus: int, facts: int, seed: int) -> float:
    rng = random.Random(seed)
    picks = [rng.randrange(skus) for _ in range(facts)]
    per_caller = facts // CALLERS

    async def caller(k: int) -> None:
        for i in picks[k * per_caller:(k + 1) * per_caller]:
            await ledger.write(functools.partial(sale_on, i=i))

    started = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(CALLERS)))
    return per_caller * CALLERS / (time.perf_counter() - started)


def raw_writes(path: Path, skus: int, facts: int, seed: int, *, batch: int = 1000,
               cache_kib: int = 0, ordinal: int = 999) -> float:
    """The same work in bare sqlite3 on the same file (FULL, 1000 per transaction).

    ``cache_kib``: SQLite's page cache (0: its default, 2 MiB, as the ledger has).
    """
    rng = random.Random(seed + 1)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = FULL")
        if cache_kib:
            conn.execute(f"PRAGMA cache_size = -{cache_kib}")
        payload = b'{"seq":1,"type":"sale","data":{}}' + b" " * 200
        key = ordinal << 40
        started = time.perf_counter()
        done = 0
        while done < facts:
            conn.execute("BEGIN IMMEDIATE")
            for _ in range(min(batch, facts - done)):
                i = rng.randrange(skus)
                sku = conn.execute("SELECT sku FROM catalog_gtins WHERE gtin = ?",
                                   (_gtin(i),)).fetchone()[0]
                conn.execute("SELECT price FROM catalog WHERE sku = ?", (sku,)).fetchone()
                done += 1
                conn.execute("INSERT INTO events VALUES (?, ?, ?, 'id', 'sale', 'ts', ?)",
                             (key + done, ordinal, done, payload))
                conn.execute("UPDATE stock SET on_hand = on_hand - 1 WHERE sku = ?", (sku,))
            conn.execute("COMMIT")
        return facts / (time.perf_counter() - started)
    finally:
        conn.close()


def sku_point(work: Path, skus: int, facts: int) -> dict[str, Any]:
    path = work / f"skus-{skus}" / "ledger.db"
    started = time.perf_counter()
    with Ledger.open(path, BACKLOG_STORE) as ledger:
        populate(ledger, skus)
        populate_s = time.perf_counter() - started
        rate = asyncio.run(ledger_writes(ledger, skus, facts, seed=skus))
    raw = raw_writes(path, skus, facts, seed=skus)
    big = raw_writes(path, skus, facts, seed=skus + 7, cache_kib=BIG_CACHE_KIB,
                     ordinal=998)
    return {"skus": skus, "ledger_facts_per_s": rate, "raw_facts_per_s": raw,
            "raw_big_cache_facts_per_s": big,
            "populate_s": populate_s, "db_mib": path.stat().st_size / 1024 / 1024}


# --------------------------------------------------------------------------- run
def run(quick: bool = False, tiny: bool = False, central: str = "auto") -> dict[str, Any]:
    sizes = _sizes(quick, tiny)
    out: dict[str, Any] = {}
    with scratch_dir("bench-scaling-") as work:
        try:
            out["drain"] = asyncio.run(drain_curve(work, sizes["drain"], central))
        except Exception as exc:  # noqa: BLE001 - the other curve still runs; the error is shown
            out["drain"] = {"error": f"{type(exc).__name__}: {exc}"}
        out["skus"] = [sku_point(work, n, sizes["facts"]) for n in sizes["skus"]]
    return out


def rows(f: dict[str, Any]) -> list[Row]:
    g = "scaling"
    out: list[Row] = []
    drain = f["drain"]
    if "error" in drain:
        out.append(Row(g, "drain curve", None, "", error=drain["error"]))
    else:
        largest = drain["points"][-1] if drain["points"] else None
        for point in drain["points"]:
            step = point.get("step_vs_linear")
            note = f"{point['seconds']:.2f} s, central: {drain['central']}"
            if step is not None:
                note += f", step {step:.2f}x linear"
            out.append(Row(g, f"drain {point['events']:,} events", point["events_per_s"], "ev/s",
                           point["ceiling_read_events_per_s"], "ledger read of that backlog",
                           f"step ≤ {STEP_SLACK:g}x linear" if step is not None else "",
                           (step <= STEP_SLACK) if step is not None else None, note=note))
        within = largest.get("last_vs_first_quarter") if largest else None
        if largest is not None and within is not None:
            rates = largest["quarter_rates"]
            out.append(Row(g, f"drain {largest['events']:,}: last quarter of the backlog vs first",
                           rates[-1], "ev/s", rates[0], "first quarter, same drain",
                           f"≥ {1 / STEP_SLACK:.2f}x (no slow-down as it grows)",
                           within >= 1 / STEP_SLACK,
                           note="quarters " + " / ".join(f"{r / 1000:.0f}k" for r in rates)))
    base = f["skus"][0]["ledger_facts_per_s"] if f["skus"] else None
    for point in f["skus"]:
        flat = point["ledger_facts_per_s"] / base if base else None
        out.append(Row(g, f"ledger sales, {point['skus']:,} SKUs in catalog + stock",
                       point["ledger_facts_per_s"], "facts/s", point["raw_facts_per_s"],
                       "raw sqlite3, same lookups + writes, FULL",
                       note=f"{flat:.2f}x the {f['skus'][0]['skus']:,}-SKU rate"
                       if flat is not None else ""))
        if "raw_big_cache_facts_per_s" in point:
            out.append(Row(g, f"raw sqlite3, {point['skus']:,} SKUs, page cache "
                              f"{BIG_CACHE_KIB // 1024} MiB", point["raw_big_cache_facts_per_s"],
                           "facts/s", point["raw_facts_per_s"], "default 2 MiB page cache"))
    return out


def main() -> None:
    figures = run(quick="--quick" in sys.argv, tiny="--tiny" in sys.argv)
    print_rows("scaling curves", rows(figures))


if __name__ == "__main__":
    main()
