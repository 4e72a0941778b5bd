"""Bounded history (issue 21): central prunes applied, checkpointed events older than the
retention window, in batches, on its own connection while the writer runs, and the dedup,
digest and snapshot guarantees still hold (real broker; SQLite and a real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from central.core import Core, Inbound
from central.history import Compactor, candidates, compact, compact_batch
from central.history_schema import HistorySettings, compacted_through
from central.storage import Database
from sync.wire import digest_lines, format_ts
from tests.central.conftest import Central, FakeStore, event, wait_until

FUTURE = format_ts(datetime.now(UTC) + timedelta(days=1))
PAST = format_ts(datetime.now(UTC) - timedelta(days=1))


def _flush(central: Central) -> None:
    central.service.call(lambda core: (core.flush_projection(), []))


def _runs(central: Central, store: str) -> list[tuple[int, int]]:
    with Database(central.config.database_url).reading() as conn:
        return [(int(a), int(b)) for a, b in conn.execute(
            "SELECT first_seq, last_seq FROM event_runs WHERE store = ? ORDER BY first_seq",
            (store,))]


def _digest(store: FakeStore, through: int, cells: dict[str, tuple[int, int]]) -> None:
    skus, sha = digest_lines((sku, on, res) for sku, (on, res) in cells.items())
    store.publish(store.topics.digest, orjson.dumps({
        "v": 1, "store": store.store, "epoch": store.epoch, "through_seq": through,
        "through_cseq": 0, "skus": skus, "sha256": sha}))


def test_pruned_history_keeps_dedup_digest_and_snapshot(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    store = make_store("S001")
    for start in range(1, 51, 10):
        store.send([event(seq, "A-1", 10 if seq == 1 else -1) for seq in range(start, start + 10)])
    store.wait_ack(50)
    store.send([{**event(51), "stock": "not a list"}])  # quarantined: its body must stay
    store.send([event(seq, "B-2", 2, "receipt") for seq in range(52, 61)])
    store.wait_ack(60)
    central.sync()
    _flush(central)
    url = central.config.database_url
    conn = Database(url).connect()
    try:
        assert compact(conn, PAST).runs == 0  # nothing older than the cutoff yet
        done = compact(conn, FUTURE, batch_runs=2)  # several small transactions
        assert (done.runs, done.events) == (5, 50)
        assert done.batches >= 3
        assert compacted_through(conn, "S001", store.epoch) == 50
    finally:
        conn.close()
    assert _runs(central, "S001") == [(51, 51), (52, 60)]  # quarantine and after: kept
    expected = {"A-1": (-39, 0), "B-2": (18, 0)}
    assert central.stock("S001") == expected
    snapshot = central.http.get("/v1/stores/S001/snapshot",
                                headers={"Authorization": "Bearer token-s001"}).json()
    assert {r["sku"]: (r["on_hand"], r["reserved"]) for r in snapshot["stock"]} == expected
    assert snapshot["epochs"] == {store.epoch: 60}
    assert central.get("/v1/stores/S001/quarantine")["events"][0]["event"]["seq"] == 51

    # dedup: an old batch resent is a duplicate (acked, not applied again, no conflict);
    # below the floor even a different body cannot be compared, above it still can
    dup_before = central.service.core.counters().events_duplicate
    before = store.ack_count()
    store.send([event(seq, "A-1", -1) for seq in range(11, 21)])
    store.send([event(5, "A-1", -7)])
    store.wait_ack(60, after=before)
    central.sync()
    assert central.service.core.counters().events_duplicate == dup_before + 11
    assert central.alerts("event_conflict") == []
    store.send([event(55, "B-2", 99)])  # retained: its hash is compared
    wait_until(lambda: len(central.alerts("event_conflict")) == 1, what="conflict above floor")
    assert central.stock("S001") == expected

    # digest at the current point: compared (and equal); one older than the floor: set aside
    _digest(store, 60, expected)
    wait_until(lambda: central.get("/v1/stores/S001")["digest_result"] is not None,
               what="digest compared")
    result = central.get("/v1/stores/S001")["digest_result"]
    result = orjson.loads(result) if isinstance(result, str) else result
    assert result["match"] is True
    _digest(store, 40, {"A-1": (-29, 0)})
    central.sync()
    assert central.alerts("stock_mismatch") == []


def test_unprojected_events_are_never_pruned(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/central.db")
    db.create_schema()
    core = Core(db.connect())
    core.projection_interval = 3600  # keep everything pending
    topic = "retail/v1/stores/S001/events"
    body = {"v": 1, "store": "S001", "epoch": "e1", "events": [event(1), event(2)]}
    core.process([Inbound(topic, orjson.dumps(body), False)])
    conn = db.connect()
    assert compact(conn, FUTURE).runs == 0
    core.flush_projection()
    body = {"v": 1, "store": "S001", "epoch": "e1", "events": [event(3)]}
    core.process([Inbound(topic, orjson.dumps(body), False)])
    done = compact(conn, FUTURE)
    assert (done.runs, done.events) == (1, 2)
    assert compacted_through(conn, "S001", "e1") == 2
    conn.close()
    core.conn.close()


def test_background_compactor_prunes_while_the_writer_applies(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    settings = HistorySettings(retention_days=1e-6, interval_s=0.1, batch_runs=3, pause_s=0)
    compactor = Compactor(Database(central.config.database_url), settings)
    compactor.start()
    try:
        stores = [make_store("S001"), make_store("S002")]
        for start in range(1, 201, 20):
            for s in stores:
                s.send([event(seq, "A-1", -1) for seq in range(start, start + 20)])
        for s in stores:
            s.wait_ack(200)
        central.sync()
        _flush(central)
        wait_until(lambda: compactor.pruned_events >= 380, timeout=60, what="pruned")
    finally:
        compactor.stop()
    for s in stores:
        s.send([event(seq, "A-1", -1) for seq in range(1, 21)])  # old resend: a duplicate
        s.wait_ack(200)
    central.sync()
    assert central.alerts("event_conflict") == []
    assert central.stock("S001") == {"A-1": (-200, 0)}
    assert central.stock("S002") == {"A-1": (-200, 0)}
    assert len(_runs(central, "S001")) <= 1


def test_a_slower_pass_never_lowers_the_floor(tmp_path: Path) -> None:
    """Two pruners (one per worker) may race: the floor only moves up."""
    db = Database(f"sqlite:///{tmp_path}/central.db")
    db.create_schema()
    core = Core(db.connect())
    topic = "retail/v1/stores/S001/events"
    for first in (1, 4):
        body = {"v": 1, "store": "S001", "epoch": "e1",
                "events": [event(s) for s in range(first, first + 3)]}
        core.process([Inbound(topic, orjson.dumps(body), False)])
    core.flush_projection()
    fast, slow = db.connect(), db.connect()
    stale = candidates(slow)  # the slow pass read the epochs before the fast one ran
    assert compact(fast, FUTURE).events == 6
    assert compacted_through(fast, "S001", "e1") == 6
    stale = [(s, e, 0, 3, q) for s, e, _, _, q in stale]  # it believed projected = 3
    # what it read (the run 1…3) before the fast pass deleted it, put back for its delete
    slow.execute("INSERT INTO event_runs (store, epoch, first_seq, last_seq, hashes, body, "
                 "received) VALUES ('S001', 'e1', 1, 3, x'', x'5b5d', ?)", (PAST,))
    assert compact_batch(slow, FUTURE, 10, stale) == (1, 3)
    assert compacted_through(fast, "S001", "e1") == 6
    for conn in (fast, slow, core.conn):
        conn.close()
