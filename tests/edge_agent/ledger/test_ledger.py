"""Ledger invariants: gapless seq, projection = sum of deltas, op isolation, refusals."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.errors import (
    DatabaseCorrupt,
    DatabaseLocked,
    FactRejected,
    LedgerError,
    SchemaTooNew,
)
from edge_agent.ledger import Ledger, Tx, read_epochs, read_event_range

SKUS = ["A-1", "B-2", "C-3", "d.4", "E:5/6"]

fact_strategy = st.tuples(
    st.sampled_from(["sale", "receipt", "adjustment", "count", "fulfilment"]),
    st.lists(st.tuples(st.sampled_from(SKUS), st.integers(-50, 50)), max_size=4),
    st.lists(st.tuples(st.sampled_from(SKUS), st.integers(-5, 5)), max_size=2),
)


def all_events(path: Path) -> list[dict[str, object]]:
    conn = sqlite3.connect(path)
    try:
        return [
            orjson.loads(row[0]) for row in conn.execute("SELECT payload FROM events ORDER BY id")
        ]
    finally:
        conn.close()


def projection(path: Path) -> dict[str, tuple[int, int]]:
    conn = sqlite3.connect(path)
    try:
        return {
            r[0]: (r[1], r[2]) for r in conn.execute("SELECT sku, on_hand, reserved FROM stock")
        }
    finally:
        conn.close()


def recomputed(events: list[dict[str, object]]) -> dict[str, tuple[int, int]]:
    on_hand: Counter[str] = Counter()
    reserved: Counter[str] = Counter()
    for event in events:
        for item in event.get("stock", []):  # type: ignore[attr-defined]
            on_hand[item["sku"]] += item["delta"]
        for item in event.get("reserve", []):  # type: ignore[attr-defined]
            reserved[item["sku"]] += item["delta"]
    return {
        sku: (on_hand[sku], reserved[sku])
        for sku in set(on_hand) | set(reserved)
        if on_hand[sku] or reserved[sku]
    }


def nonzero(rows: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    return {k: v for k, v in rows.items() if v != (0, 0)}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(facts=st.lists(fact_strategy, max_size=60), writers=st.integers(1, 8))
def test_projection_equals_sum_of_deltas_and_seq_is_gapless(
    tmp_path_factory: pytest.TempPathFactory,
    facts: list[tuple[str, list[tuple[str, int]], list[tuple[str, int]]]],
    writers: int,
) -> None:
    path = tmp_path_factory.mktemp("prop") / "ledger.db"
    with Ledger.open(path, "S1") as ledger:
        chunks = [facts[i::writers] for i in range(writers)]

        def write_chunk(
            chunk: list[tuple[str, list[tuple[str, int]], list[tuple[str, int]]]],
        ) -> None:
            for kind, stock, reserve in chunk:
                ledger.write_blocking(
                    lambda tx, k=kind, s=stock, r=reserve: tx.append(
                        k, {"n": 1}, stock=s, reserve=r
                    )
                )

        threads = [threading.Thread(target=write_chunk, args=(c,)) for c in chunks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    events = all_events(path)
    assert [e["seq"] for e in events] == list(range(1, len(facts) + 1))
    assert nonzero(projection(path)) == recomputed(events)


async def test_concurrent_async_writers_are_group_committed(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path, "S1") as ledger:
        committed = 0

        def on_commit() -> None:
            nonlocal committed
            committed += 1

        ledger.add_commit_listener(on_commit)
        results = await asyncio.gather(
            *[
                ledger.write(lambda tx, i=i: tx.append("receipt", {"i": i}, stock=[("A-1", 1)]))
                for i in range(2000)
            ]
        )
        await asyncio.sleep(0.05)
        assert sorted(r.seq for r in results) == list(range(1, 2001))
        assert len({r.id for r in results}) == 2000
        # Far fewer commits than writes: that is what group commit means.
        assert 1 <= committed < 2000
        assert (await ledger.stats()).outbox_pending == 2000
    assert projection(path) == {"A-1": (2000, 0)}


def test_failed_op_is_rolled_back_alone(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path, "S1") as ledger:
        ledger.write_blocking(lambda tx: tx.append("receipt", {}, stock=[("A-1", 10)]))

        def half_done(tx: Tx) -> None:
            tx.append("sale", {}, stock=[("A-1", -3)])
            tx.execute("INSERT INTO meta (key, value) VALUES ('half', 'done')")
            tx.append("sale", {}, stock=[("A-1", -3)])
            raise RuntimeError("refused after writing")

        futures = [
            ledger.submit(lambda tx: tx.append("sale", {}, stock=[("A-1", -1)])),
            ledger.submit(half_done),
            ledger.submit(lambda tx: tx.append("sale", {}, stock=[("A-1", -1)])),
        ]
        assert futures[0].result().seq == 2
        with pytest.raises(RuntimeError, match="refused"):
            futures[1].result()
        assert futures[2].result().seq == 3  # the failed op's seqs were given back
        assert (
            ledger.read_blocking(
                lambda c: c.execute("SELECT count(*) FROM meta WHERE key='half'").fetchone()[0]
            )
            == 0
        )
    assert [e["seq"] for e in all_events(path)] == [1, 2, 3]
    assert projection(path) == {"A-1": (8, 0)}


def test_reads_inside_an_op_see_buffered_deltas(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db", "S1") as ledger:

        def op(tx: Tx) -> tuple[int, int, int]:
            tx.append("receipt", {}, stock=[("A-1", 5)], reserve=[("A-1", 2)])
            first = tx.on_hand("A-1")
            rows = tx.query("SELECT on_hand FROM stock WHERE sku = 'A-1'")
            tx.append("sale", {}, stock=[("A-1", -1)])
            return first, int(rows[0][0]), tx.on_hand("A-1") - tx.reserved("A-1")

        assert ledger.write_blocking(op) == (5, 5, 2)


@pytest.mark.parametrize(
    ("data", "stock", "match"),
    [
        ({"price": 1.5}, [], "floating-point"),
        ({"n": 2**53}, [], "2\\^53"),
        ({"s": "\ud800"}, [], "Unicode"),
        ({}, [("bad sku!", 1)], "not a valid SKU"),
        ({}, [("A-1", 1.0)], "not a safe integer"),
        ({}, [("A-1", True)], "not a safe integer"),
        ({"blob": "x" * 70_000}, [], "protocol limit"),
    ],
)
def test_facts_the_protocol_cannot_carry_are_refused(
    tmp_path: Path, data: dict[str, object], stock: list[tuple[str, object]], match: str
) -> None:
    with Ledger.open(tmp_path / "l.db", "S1") as ledger:
        with pytest.raises(FactRejected, match=match):
            ledger.write_blocking(lambda tx: tx.append("sale", data, stock=stock))  # type: ignore[arg-type]
        assert ledger.write_blocking(lambda tx: tx.append("sale", {})).seq == 1


def test_new_epoch_restarts_seq_and_keeps_old_events(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db", "S1") as ledger:
        first_epoch = ledger.current_epoch
        ledger.write_blocking(lambda tx: tx.append("receipt", {}, stock=[("A-1", 1)]))
        ledger.write_blocking(lambda tx: tx.append("receipt", {}, stock=[("A-1", 1)]))
        new = ledger.write_blocking(lambda tx: tx.new_epoch("restored from backup"))
        appended = ledger.write_blocking(lambda tx: tx.append("sale", {}, stock=[("A-1", -1)]))
        assert (appended.epoch, appended.seq) == (new, 1)
        epochs = ledger.read_blocking(read_epochs)
        assert [(e.epoch, e.last_seq) for e in epochs] == [(first_epoch, 2), (new, 1)]
        old = asyncio.run(ledger.events_after(first_epoch, 0, max_events=10, max_bytes=10**6))
        assert [e.seq for e in old] == [1, 2]
    with Ledger.open(tmp_path / "l.db", "S1") as reopened:
        assert reopened.current_epoch == new
        assert reopened.write_blocking(lambda tx: tx.append("sale", {})).seq == 2


def test_events_after_respects_count_and_bytes(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db", "S1") as ledger:
        for i in range(20):
            ledger.write_blocking(lambda tx, i=i: tx.append("receipt", {"pad": "x" * 100, "i": i}))
        epoch = ledger.current_epoch
        by_count = asyncio.run(ledger.events_after(epoch, 5, max_events=4, max_bytes=10**6))
        assert [e.seq for e in by_count] == [6, 7, 8, 9]
        size = len(by_count[0].payload)
        by_bytes = asyncio.run(
            ledger.events_after(epoch, 0, max_events=100, max_bytes=3 * size + 5)
        )
        assert len(by_bytes) == 3
        one = asyncio.run(ledger.events_after(epoch, 0, max_events=100, max_bytes=1))
        assert len(one) == 1  # never an empty batch while events are pending


def test_event_range_is_events_after_joined(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db", "S1") as ledger:
        for i in range(20):
            ledger.write_blocking(lambda tx, i=i: tx.append("receipt", {"pad": "x" * 100, "i": i}))
        epoch = ledger.current_epoch
        limits = ((5, 4, 10**6), (0, 100, 3 * 140), (0, 100, 1), (18, 9, 10**6))
        for after, count, max_bytes in limits:
            events = asyncio.run(ledger.events_after(epoch, after, max_events=count,
                                                     max_bytes=max_bytes))
            found = asyncio.run(ledger.event_range(epoch, after, max_events=count,
                                                   max_bytes=max_bytes))
            assert found == (events[0].seq, events[-1].seq,
                             b",".join(e.payload for e in events))
        assert asyncio.run(ledger.event_range(epoch, 20, max_events=5, max_bytes=10**6)) is None


def test_event_range_stops_before_a_gap(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db", "S1") as ledger:
        for _ in range(6):
            ledger.write_blocking(lambda tx: tx.append("receipt", {}))
        epoch = ledger.current_epoch
    conn = sqlite3.connect(tmp_path / "l.db")
    conn.execute("DELETE FROM events WHERE seq = 4")  # damage no sound ledger has
    conn.commit()
    conn.execute("BEGIN")
    found = read_event_range(conn, epoch, 1, 10, 10**6)
    conn.close()
    assert found is not None
    assert found[:2] == (2, 3)


def test_acked_watermark_never_goes_down_and_prunes(tmp_path: Path) -> None:
    async def scenario() -> None:
        with Ledger.open(tmp_path / "l.db", "S1") as ledger:
            for _ in range(5):
                await ledger.write(lambda tx: tx.append("receipt", {}))
            epoch = ledger.current_epoch
            await ledger.mark_acked(epoch, 4)
            await ledger.mark_acked(epoch, 2)
            assert (await ledger.epochs())[0].acked_seq == 4
            assert (await ledger.stats()).outbox_pending == 1
            assert await ledger.prune_acked("9999-01-01T00:00:00.000Z") == 4
            remaining = await ledger.events_after(epoch, 0, max_events=10, max_bytes=10**6)
            assert [e.seq for e in remaining] == [5]

    asyncio.run(scenario())


def test_second_agent_on_the_same_file_is_refused(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db", "S1"), pytest.raises(DatabaseLocked, match="pid"):
        Ledger.open(tmp_path / "l.db", "S1")


def test_wrong_store_id_is_refused(tmp_path: Path) -> None:
    Ledger.open(tmp_path / "l.db", "S1").close()
    with pytest.raises(LedgerError, match="belongs to store 'S1'"):
        Ledger.open(tmp_path / "l.db", "S2")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Ledger.open(tmp_path / "l.db", "S1").close()
    conn = sqlite3.connect(tmp_path / "l.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(SchemaTooNew, match="999"):
        Ledger.open(tmp_path / "l.db", "S1")


def test_corrupt_file_is_reported_clearly(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(DatabaseCorrupt, match=r"not a usable SQLite database|integrity"):
        Ledger.open(path, "S1")


def test_damaged_pages_fail_quick_check(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger.open(path, "S1") as ledger:
        for i in range(300):
            ledger.write_blocking(
                lambda tx, i=i: tx.append(
                    "receipt", {"pad": "y" * 500, "i": i}, stock=[(f"S{i}", 1)]
                )
            )
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    for page in range(3, len(data) // page_size, 2):  # scribble over every other page
        data[page * page_size + 8 : page * page_size + 200] = b"\xa5" * 192
    path.write_bytes(bytes(data))
    with pytest.raises(DatabaseCorrupt):
        Ledger.open(path, "S1")


def test_new_database_gets_identity_and_needs_resync(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db", "S9") as ledger:
        assert ledger.is_new
        meta = ledger.read_blocking(lambda c: dict(c.execute("SELECT key, value FROM meta")))
        assert meta["store_id"] == "S9"
        assert meta["resync_needed"] == "1"
        assert len(ledger.current_epoch) == 36
    with Ledger.open(tmp_path / "l.db", "S9") as again:
        assert not again.is_new


def test_epoch_watermark_follows_facts_flushed_mid_op(tmp_path: Path) -> None:
    """An op that appends and then runs its own SQL still moves epochs.last_seq."""
    with Ledger.open(tmp_path / "l.db", "S1") as ledger:
        def op(tx: Tx) -> None:
            tx.append("receipt", {}, stock=[("A-1", 1)])
            tx.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")

        ledger.write_blocking(op)
        assert ledger.read_blocking(read_epochs)[0].last_seq == 1
        assert asyncio.run(ledger.stats()).outbox_pending == 1
        assert asyncio.run(ledger.digest_state()).through_seq == 1

        def aborted(tx: Tx) -> None:
            tx.append("receipt", {}, stock=[("A-1", 1)])
            tx.execute("SELECT 1")
            raise RuntimeError("no")

        with pytest.raises(RuntimeError):
            ledger.write_blocking(aborted)
        assert ledger.read_blocking(read_epochs)[0].last_seq == 1
        assert ledger.write_blocking(lambda tx: tx.append("sale", {})).seq == 2


async def test_a_cancelled_caller_does_not_cancel_its_write(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db", "S1") as ledger:
        gate = threading.Event()

        def slow(tx: Tx) -> None:
            gate.wait(5)
            tx.append("receipt", {}, stock=[("A-1", 1)])

        task = asyncio.get_running_loop().create_task(ledger.write(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the next write is queued behind it, so the first one has committed by now
        assert (await ledger.write(lambda tx: tx.append("sale", {}))).seq == 2
        assert await ledger.read(lambda c: c.execute(
            "SELECT on_hand FROM stock WHERE sku = 'A-1'").fetchone()[0]) == 1


def test_reads_of_unbuffered_tables_keep_the_group_batched_and_still_see_writes(
        tmp_path: Path) -> None:
    """Only SQL naming events/stock/epochs flushes the buffers; every read stays correct."""
    with Ledger.open(tmp_path / "l.db", "S1") as ledger:
        def op(tx: Tx) -> tuple[int, int, int, str | None]:
            tx.append("receipt", {}, stock=[("A-1", 4)])
            meta_rows = len(tx.query("SELECT key FROM meta"))  # no flush needed
            buffered = len(tx._events)
            tx.set_meta("note", "x")  # a write: savepoint, still no flush of events
            seen = tx.query("SELECT on_hand FROM stock WHERE sku = 'A-1'")  # flushes
            return meta_rows, buffered, int(seen[0][0]), tx.get_meta("note")

        meta_rows, buffered, on_hand, note = ledger.write_blocking(op)
        assert meta_rows > 0
        assert buffered == 1
        assert on_hand == 4
        assert note == "x"

        def rolled_back(tx: Tx) -> None:
            tx.append("receipt", {}, stock=[("A-1", 100)])
            tx.set_meta("note", "y")
            raise RuntimeError("refused")

        with pytest.raises(RuntimeError):
            ledger.write_blocking(rolled_back)
        assert ledger.read_blocking(lambda c: (
            c.execute("SELECT on_hand FROM stock").fetchone()[0],
            c.execute("SELECT value FROM meta WHERE key='note'").fetchone()[0],
            c.execute("SELECT last_seq FROM epochs").fetchone()[0])) == (4, "x", 1)


def test_clean_stop_skips_the_full_check_and_unclean_stop_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent.ledger import lockfile, schema  # noqa: PLC0415 - patched below

    path = tmp_path / "l.db"
    with Ledger.open(path, "S1") as ledger:
        ledger.write_blocking(lambda tx: tx.append("receipt", {"i": 1}, stock=[("A", 1)]))
    assert lockfile.lock_path(path).read_text().startswith("clean size=")
    assert lockfile.clean_stop_matches(path)

    checks: list[Path] = []
    real = schema.quick_check
    monkeypatch.setattr(schema, "quick_check", lambda conn, p: (checks.append(p), real(conn, p)))
    Ledger.open(path, "S1").close()
    assert checks == []  # clean stop, file unchanged: no full read of the file

    # A process that dies leaves its pid in the lock file, not the mark.
    fd = lockfile.acquire_lock(path)
    os.close(fd)
    assert not lockfile.clean_stop_matches(path)
    Ledger.open(path, "S1").close()
    assert checks == [path]

    # A file changed behind the agent's back after a clean stop is checked too.
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS scribble (x)")
    conn.close()
    assert not lockfile.clean_stop_matches(path)
    Ledger.open(path, "S1").close()
    assert checks == [path, path]
