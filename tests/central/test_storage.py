"""The central's storage on real SQLite files and a real PostgreSQL: the schema version, the
migration of a schema-1 database (one row per event) to runs, the ``events`` view kept for
operators, and the lazily checkpointed stock projection surviving a crash."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from central import queries, schema_versions
from central.core import Core
from central.errors import StorageError
from central.runs import stock_cells
from central.schema_versions import SCHEMA_VERSION
from central.storage import Database
from sync.wire import canonical_json
from tests.central.conftest import event

TOPIC = "retail/v1/stores/S001/events"

# The schema-1 tables that held events and epochs, as the first release created them.
_V1_EPOCHS = """CREATE TABLE epochs (store TEXT NOT NULL, epoch TEXT NOT NULL,
    applied_seq BIGINT NOT NULL DEFAULT 0, max_seen_seq BIGINT NOT NULL DEFAULT 0,
    first_seen TEXT NOT NULL, PRIMARY KEY (store, epoch))"""
_V1_EVENTS = """CREATE TABLE events (store TEXT NOT NULL, epoch TEXT NOT NULL,
    seq BIGINT NOT NULL, hash TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL,
    quarantine TEXT, resolved INTEGER NOT NULL DEFAULT 0, received TEXT NOT NULL,
    PRIMARY KEY (store, epoch, seq))"""
_V1_STORES = """CREATE TABLE stores (store TEXT PRIMARY KEY, state TEXT NOT NULL DEFAULT
    'unknown', epoch TEXT, boot_id TEXT, agent TEXT, last_seq BIGINT, birth_applied_cseq BIGINT,
    state_ts TEXT, issued_cseq BIGINT NOT NULL DEFAULT 0, acked_cseq BIGINT, health TEXT,
    health_ts TEXT, last_digest TEXT, digest_result TEXT)"""
_V1_STOCK = """CREATE TABLE stock (store TEXT NOT NULL, sku TEXT NOT NULL,
    on_hand BIGINT NOT NULL DEFAULT 0, reserved BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (store, sku))"""


def batch(events: list[dict[str, Any]], epoch: str = "e1") -> tuple[str, bytes, bool]:
    return TOPIC, orjson.dumps({"v": 1, "store": "S001", "epoch": epoch, "events": events}), False


QUARANTINED = {("e1", 7): 0, ("e2", 3): 1}  # (epoch, seq) → resolved


def legacy_database(db_url: str) -> list[tuple[Any, ...]]:
    """A schema-1 database with 1,205 events in two epochs, two of them quarantined (one
    since resolved); returns its event rows as the old table held them."""
    conn = Database(db_url).connect()
    conn.begin_write()
    for ddl in (_V1_STORES, _V1_EPOCHS, _V1_EVENTS, _V1_STOCK):
        conn.execute(ddl)
    rows: list[tuple[Any, ...]] = []
    for epoch, count in (("e1", 1200), ("e2", 5)):
        for seq in range(1, count + 1):
            text = canonical_json(event(seq, "A-1", -1)).decode()
            resolved = QUARANTINED.get((epoch, seq))
            rows.append(("S001", epoch, seq, hashlib.sha256(text.encode()).hexdigest(), "sale",
                         text, None if resolved is None else "stock: must be a list",
                         resolved or 0, "2026-11-25T09:00:00.000Z"))
        conn.execute("INSERT INTO epochs VALUES (?, ?, ?, ?, ?)",
                     ("S001", epoch, count, count, "2026-11-25T09:00:00.000Z"))
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("INSERT INTO stores (store) VALUES ('S001')")
    conn.execute("INSERT INTO stock VALUES ('S001', 'A-1', ?, 0)", (-(len(rows) - 2),))
    conn.commit()
    conn.close()
    return rows


def test_a_new_database_has_the_current_schema(db_url: str) -> None:
    db = Database(db_url)
    db.create_schema()
    db.create_schema()  # idempotent
    with db.reading() as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'") == [
            (str(SCHEMA_VERSION),)]
        assert conn.execute("SELECT COUNT(*) FROM events") == [(0,)]


def test_a_newer_schema_is_refused(db_url: str) -> None:
    db = Database(db_url)
    db.create_schema()
    conn = db.connect()
    conn.begin_write()
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="schema version 99"):
        db.create_schema()


@pytest.mark.parametrize("page", [20_000, 499])  # one read, or runs across page reads
def test_schema_1_is_migrated_without_losing_an_event(db_url: str, page: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema_versions, "_MIGRATION_PAGE", page)
    old = legacy_database(db_url)
    db = Database(db_url)
    db.create_schema()
    with db.reading() as conn:
        migrated = conn.execute(
            "SELECT store, epoch, seq, hash, type, body, quarantine, resolved, received "
            "FROM events ORDER BY epoch, seq")
        runs = conn.execute("SELECT epoch, first_seq, last_seq FROM event_runs "
                            "ORDER BY epoch, first_seq")
        projected = conn.execute("SELECT epoch, projected_seq FROM epochs ORDER BY epoch")
        quarantined = queries.quarantined(conn, "S001")
    assert [tuple(r) for r in migrated] == old
    assert runs == [("e1", 1, 1000), ("e1", 1001, 1200), ("e2", 1, 5)]
    assert projected == [("e1", 1200), ("e2", 5)]
    assert [(q["epoch"], q["seq"], q["resolved"]) for q in quarantined] == [
        ("e1", 7, False), ("e2", 3, True)]
    assert quarantined[0]["event"] == orjson.loads(old[6][5])
    # the migrated history is live: a resend is a duplicate, a changed one a conflict
    core = Core(db.connect())
    assert core.stores["S001"].quarantined == 1
    changed = {**orjson.loads(old[1198][5]), "id": "changed"}
    resend = orjson.loads(old[1199][5])
    out = core.process([batch([changed, resend, event(1201, "A-1", -1)])])
    assert orjson.loads(out[0].payload)["through_seq"] == 1201
    conflicts = [orjson.loads(d) for k, d in core.conn.execute("SELECT kind, detail FROM alerts")]
    assert [c["seq"] for c in conflicts] == [1199]
    assert conflicts[0]["kept_sha256"] == old[1198][3]
    assert stock_cells(core.conn, "S001") == {"A-1": [-1204, 0]}
    core.conn.close()


def test_the_projection_lags_unseen_and_survives_a_crash(db_url: str) -> None:
    db = Database(db_url)
    db.create_schema()
    first = Core(db.connect())
    first.process([batch([event(s, f"S-{s % 3}", -s) for s in range(1, 11)])])
    first.process([batch([event(1, "S-0", 100)], epoch="e2")])
    # nothing projected yet: the stock table is empty, every reader still sees the truth
    with db.reading() as conn:
        assert conn.execute("SELECT COUNT(*) FROM stock") == [(0,)]
        exact = stock_cells(conn, "S001")
        snapshot = queries.snapshot(conn, "S001")
        listed = queries.stock(conn, "S001")
    assert exact == {"S-0": [-18 + 100, 0], "S-1": [-22, 0], "S-2": [-15, 0]}
    assert {r["sku"]: r["on_hand"] for r in snapshot["stock"]} == {k: v[0] for k, v in
                                                                   exact.items()}
    assert snapshot["epochs"] == {"e1": 10, "e2": 1}
    assert {r["sku"]: r["on_hand"] for r in listed} == {k: v[0] for k, v in exact.items()}
    first.conn.close()  # a crash: the pending projection dies with the process
    second = Core(db.connect())  # replays the unprojected events
    second.process([batch([event(11, "S-1", 1)])])
    second.flush_projection()
    rows = {sku: int(on) for sku, on in second.conn.execute(
        "SELECT sku, on_hand FROM stock WHERE store = 'S001'")}
    assert rows == {"S-0": 82, "S-1": -21, "S-2": -15}
    assert second.conn.execute(
        "SELECT epoch, projected_seq, applied_seq FROM epochs ORDER BY epoch") == [
        ("e1", 11, 11), ("e2", 1, 1)]
    second.conn.close()


def test_a_digest_is_compared_against_the_unprojected_truth(db_url: str) -> None:
    db = Database(db_url)
    db.create_schema()
    core = Core(db.connect())
    core.process([batch([event(s, "A-1", -1) for s in range(1, 6)])])
    lines = b"A-1\t-3\t0\n"  # the store's state through seq 3
    digest = {"v": 1, "store": "S001", "epoch": "e1", "through_seq": 3, "through_cseq": 0,
              "skus": 1, "sha256": hashlib.sha256(lines).hexdigest()}
    core.process([("retail/v1/stores/S001/digest", orjson.dumps(digest), False)])
    result = orjson.loads(core.conn.execute(
        "SELECT digest_result FROM stores WHERE store = 'S001'")[0][0])
    assert result["match"] is True
    assert core.conn.execute("SELECT COUNT(*) FROM alerts") == [(0,)]
    core.conn.close()
