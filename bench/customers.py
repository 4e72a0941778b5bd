"""The till's customer lookup with a million cached customers, and the cache's size.

Run: ``.venv/bin/python -m bench.customers [--quick]`` (quick: 100,000 customers).

Workload: a real ledger file (migrations, WAL) holding N consenting customers, each with
a phone number and a loyalty card as keyed hashes (``customer_idents``) and a profile of
typical size (``customers``), written in bulk. Then lookups by phone number, half of
them hits and half misses, in random order, each through
:func:`edge_agent.customers.cache.lookup` on a read connection: read the peppers, two
HMACs, two indexed joins, one profile decode. The ceiling is the bare indexed SQLite
lookup of a precomputed 32-byte key in the same table (``SELECT ref FROM customer_idents
WHERE hmac = ?``). The hit and miss medians are printed side by side: they should agree
(no timing oracle). The size on disk is the database after a checkpoint, beside the raw
bytes it holds (profiles + hashes).
Separately, the rate at which ``customers.upsert`` commands are applied (central's
resync push), against the bulk insert of the same rows.
"""

from __future__ import annotations

import os
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import Row, percentile, scratch_dir
from edge_agent.customers import cache
from edge_agent.customers.commands import apply_customer_command
from edge_agent.ledger import Ledger
from sync.customer_ids import keyed_hash

PEPPER = bytes(range(32))
KEY_ID = "k1"


def _phone(n: int) -> str:
    return f"+336{n:08d}"


def _profile(n: int) -> bytes:
    return orjson.dumps({
        "ref": f"C-{n:08d}", "name": f"Shopper {n}", "as_of": "2026-11-25T09:00:00.000Z",
        "consent": {"recognition": True, "marketing": n % 3 == 0},
        "loyalty": {"tier": ("bronze", "silver", "gold")[n % 3], "points": n % 5000},
        "wishlist": [f"SKU-{(n * 7 + i) % 9000:05d}" for i in range(3)],
        "recently_viewed": [f"SKU-{(n * 11 + i) % 9000:05d}" for i in range(3)],
        "open_orders": [], "reservations": [],
        "value": {"index": n % 100, "channels": ["online", "store"], "recency_days": n % 60,
                  "spend": f"{n % 900}.00", "currency": "EUR"},
    }, option=orjson.OPT_SORT_KEYS)


def fill(ledger: Ledger, n: int, chunk: int = 20_000) -> tuple[float, int]:
    """N customers in bulk; returns (seconds, raw bytes written)."""
    now = time.time()
    raw = 0
    started = time.perf_counter()
    ledger.write_blocking(lambda tx: apply_customer_command(
        tx, "customers.key", {"key_id": KEY_ID,
                              "key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}))
    for base in range(0, n, chunk):
        customers = []
        idents = []
        for i in range(base, min(n, base + chunk)):
            ref = f"C-{i:08d}"
            body = _profile(i)
            customers.append((ref, body, "2026-11-25T09:00:00.000Z", now, now + 30 * 86400))
            idents.append((keyed_hash(PEPPER, "phone", _phone(i)), KEY_ID, "phone", ref))
            idents.append((keyed_hash(PEPPER, "card", f"LC{i:010d}"), KEY_ID, "card", ref))
            raw += len(body) + 64 + len(ref) * 3

        def op(tx: Any, rows: list[Any] = customers, keys: list[Any] = idents) -> None:
            tx.executemany("INSERT INTO customers (ref, profile, as_of, cached_at, expires_at) "
                           "VALUES (?, ?, ?, ?, ?)", rows)
            tx.executemany("INSERT INTO customer_idents (hmac, key_id, kind, ref) "
                           "VALUES (?, ?, ?, ?)", keys)

        ledger.write_blocking(op)
    return time.perf_counter() - started, raw


def _sample(n: int, count: int, seed: int = 3) -> list[tuple[str, bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        hit = rng.random() < 0.5
        number = rng.randrange(n) if hit else n + rng.randrange(n)
        out.append((_phone(number), hit))
    return out


def measure_lookups(path: Path, n: int, count: int) -> dict[str, float]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        sample = _sample(n, count)
        now = time.time()
        for phone, _ in sample[:2000]:  # warm the page cache
            cache.lookup(conn, "phone", phone, now)
        hits: list[float] = []
        misses: list[float] = []
        found = 0
        for phone, hit in sample:
            t0 = time.perf_counter()
            result = cache.lookup(conn, "phone", phone, now)
            elapsed = time.perf_counter() - t0
            (hits if hit else misses).append(elapsed)
            found += result is not None
        if found != len(hits):
            raise AssertionError(f"{found} found for {len(hits)} hits")
        keys = [keyed_hash(PEPPER, "phone", phone) for phone, _ in sample]
        bare: list[float] = []
        query = "SELECT ref FROM customer_idents WHERE hmac = ?"
        for key in keys:
            t0 = time.perf_counter()
            conn.execute(query, (key,)).fetchone()
            bare.append(time.perf_counter() - t0)
    finally:
        conn.close()
    both = hits + misses
    return {
        "lookups": len(both),
        "lookup_p50_ms": percentile(both, 0.50) * 1e3,
        "lookup_p99_ms": percentile(both, 0.99) * 1e3,
        "hit_p50_us": percentile(hits, 0.50) * 1e6,
        "miss_p50_us": percentile(misses, 0.50) * 1e6,
        "hit_p99_us": percentile(hits, 0.99) * 1e6,
        "miss_p99_us": percentile(misses, 0.99) * 1e6,
        "bare_p50_ms": percentile(bare, 0.50) * 1e3,
        "bare_p99_ms": percentile(bare, 0.99) * 1e3,
    }


def measure_apply(directory: Path, count: int) -> dict[str, float]:
    """customers.upsert commands (150 customers each) against the bulk insert."""
    import base64  # noqa: PLC0415

    def entry(i: int) -> dict[str, Any]:
        profile = orjson.loads(_profile(i))
        return {"ref": profile["ref"], "profile": profile, "identifiers": [
            {"kind": "phone", "hmac": base64.urlsafe_b64encode(
                keyed_hash(PEPPER, "phone", _phone(i))).rstrip(b"=").decode()}]}

    entries = [entry(i) for i in range(count)]
    with Ledger.open(directory / "apply.db", "S001") as ledger:
        ledger.write_blocking(lambda tx: apply_customer_command(
            tx, "customers.key", {"key_id": KEY_ID,
                                  "key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}))
        started = time.perf_counter()
        for base in range(0, count, 150):
            part = entries[base:base + 150]
            ledger.write_blocking(lambda tx, part=part: apply_customer_command(
                tx, "customers.upsert", {"key_id": KEY_ID, "customers": part}))
        commands_s = time.perf_counter() - started
    with Ledger.open(directory / "bulk.db", "S001") as ledger:
        bulk_s, _ = fill(ledger, count)
    return {"apply_customers": count, "apply_customers_per_s": count / commands_s,
            "bulk_customers_per_s": count / bulk_s}


def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    n = 2_000 if tiny else 100_000 if quick else 1_000_000
    with scratch_dir("bench-customers-") as directory:
        path = directory / "ledger.db"
        with Ledger.open(path, "S001") as ledger:
            fill_s, raw = fill(ledger, n)
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = os.path.getsize(path)
        out: dict[str, Any] = {"customers": n, "fill_s": fill_s, "db_bytes": size,
                               "raw_bytes": raw, "bytes_per_customer": size / n,
                               "load_average": [round(x, 2) for x in os.getloadavg()]}
        out.update(measure_lookups(path, n, 3_000 if tiny else 20_000 if quick else 50_000))
        out.update(measure_apply(directory, 300 if tiny else 5_000 if quick else 20_000))
    return out


def rows(f: dict[str, Any]) -> list[Row]:
    g = "customers"
    n = f"{int(f['customers']):,} cached"
    return [
        Row(g, f"till lookup by phone, {n}, p99", f["lookup_p99_ms"], "ms", f["bare_p99_ms"],
            "bare indexed SQLite lookup, p99", "≤ 5 ms", f["lookup_p99_ms"] <= 5.0,
            note=f"p50 {f['lookup_p50_ms']:.3f} ms over {int(f['lookups']):,} lookups"),
        Row(g, "till lookup, miss vs hit (p50)", f["miss_p50_us"], "µs", f["hit_p50_us"],
            "hit p50", "≈ 1x (no timing oracle)",
            0.8 <= f["miss_p50_us"] / f["hit_p50_us"] <= 1.25,
            note=f"p99 miss {f['miss_p99_us']:.0f} µs, hit {f['hit_p99_us']:.0f} µs"),
        Row(g, f"customer cache on disk, {n}", f["db_bytes"] / 1e6, "MB",
            f["raw_bytes"] / 1e6, "raw profiles + hashes",
            note=f"{f['bytes_per_customer']:.0f} B per customer"),
        Row(g, "customers.upsert applied", f["apply_customers_per_s"], "customers/s",
            f["bulk_customers_per_s"], "bulk executemany of the same rows",
            note=f"{int(f['apply_customers']):,} customers, 150 per command"),
    ]


def main() -> None:
    res = run(quick="--quick" in sys.argv[1:])
    print(f"load average {res['load_average']}")
    print(f"{int(res['customers']):,} customers cached in {res['fill_s']:.1f} s; "
          f"{res['db_bytes'] / 1e6:.1f} MB on disk ({res['bytes_per_customer']:.0f} B each) "
          f"for {res['raw_bytes'] / 1e6:.1f} MB of raw profiles and hashes")
    print(f"lookup p50 {res['lookup_p50_ms']:.3f} ms, p99 {res['lookup_p99_ms']:.3f} ms  |  "
          f"bare indexed lookup p50 {res['bare_p50_ms']:.3f} ms, p99 {res['bare_p99_ms']:.3f}"
          f" ms  |  ratio p99 {res['lookup_p99_ms'] / res['bare_p99_ms']:.1f}x")
    print(f"hit p50 {res['hit_p50_us']:.1f} µs, miss p50 {res['miss_p50_us']:.1f} µs "
          f"(miss/hit {res['miss_p50_us'] / res['hit_p50_us']:.2f}); p99 hit "
          f"{res['hit_p99_us']:.0f} µs, miss {res['miss_p99_us']:.0f} µs")
    print(f"customers.upsert applied {res['apply_customers_per_s']:,.0f} customers/s vs bulk "
          f"insert {res['bulk_customers_per_s']:,.0f}/s")


if __name__ == "__main__":
    main()
