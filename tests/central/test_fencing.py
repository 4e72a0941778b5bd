"""The fencing check of store ownership (issue 21), against a real PostgreSQL: a worker
whose lease was taken over applies nothing and acknowledges nothing, and a takeover waits
for an apply transaction in flight to commit (the lease row is locked FOR SHARE)."""

from __future__ import annotations

import threading
import uuid

import orjson
import pytest

from central.config import store_partition
from central.core import Core, Inbound
from central.errors import InvalidCommandError
from central.fencing import Fencing
from central.ownership_schema import OWNERSHIP_TABLES
from central.storage import Database
from tests.central.conftest import event, wait_until
from tests.helpers.postgres import Postgres

pytestmark = pytest.mark.postgres

PARTS = 8


def _db(postgres_server: Postgres) -> Database:
    db = Database(postgres_server.new_database())
    db.create_schema()
    conn = db.connect()
    for statement in OWNERSHIP_TABLES:
        conn.execute(statement)
    conn.executemany("INSERT INTO partition_leases (part) VALUES (?)",
                     [(p,) for p in range(PARTS)])
    conn.close()
    return db


def _batch(store: str, epoch: str, first: int, last: int) -> Inbound:
    body = {"v": 1, "store": store, "epoch": epoch,
            "events": [event(s) for s in range(first, last + 1)]}
    return Inbound(f"retail/v1/stores/{store}/events", orjson.dumps(body), False)


def test_a_stale_owner_applies_and_acks_nothing(postgres_server: Postgres) -> None:
    db = _db(postgres_server)
    store, epoch = "S001", str(uuid.uuid4())
    part = store_partition(store, PARTS)
    admin = db.connect()
    admin.execute("UPDATE partition_leases SET worker = 'A', token = 1 WHERE part = ?", (part,))
    fencing = Fencing("A", PARTS)
    fencing.held[part] = 1
    core = Core(db.connect(), owns=fencing.owns)
    core.fencing = fencing
    out = core.process([_batch(store, epoch, 1, 3)])
    assert [orjson.loads(p.payload)["through_seq"] for p in out] == [3]

    admin.execute("UPDATE partition_leases SET worker = 'B', token = 2 WHERE part = ?", (part,))
    assert core.process([_batch(store, epoch, 4, 6)]) == []  # fenced: no ack
    assert fencing.fenced == 1
    assert not fencing.owns(store)
    assert admin.execute("SELECT applied_seq FROM epochs WHERE store = ?", (store,)) == [(3,)]
    assert admin.execute("SELECT worker, token, applied_seq FROM fencing_log") == [("A", 1, 3)]
    # and what arrives later for that store is not ours any more: skipped, not acked
    assert core.process([_batch(store, epoch, 4, 6)]) == []
    assert admin.execute("SELECT applied_seq FROM epochs WHERE store = ?", (store,)) == [(3,)]
    core.conn.close()
    admin.close()


def test_a_takeover_waits_for_the_apply_in_flight(postgres_server: Postgres) -> None:
    db = _db(postgres_server)
    part = store_partition("S001", PARTS)
    holder = db.connect()
    holder.execute("UPDATE partition_leases SET worker = 'A', token = 1 WHERE part = ?", (part,))
    fencing = Fencing("A", PARTS)
    fencing.held[part] = 1
    holder.begin_write()
    fencing.begin(holder)  # an apply transaction of A, in flight
    taker = db.connect()
    pid = taker.execute("SELECT pg_backend_pid()")[0][0]
    done = threading.Event()

    def take_over() -> None:
        taker.execute("UPDATE partition_leases SET worker = 'B', token = token + 1 "
                      "WHERE part = ?", (part,))
        done.set()

    thread = threading.Thread(target=take_over, name="test.takeover")
    thread.start()
    watcher = db.connect()
    wait_until(lambda: watcher.execute(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?", (pid,)) == [("Lock",)],
        30, "takeover blocked on the lease row")
    assert not done.is_set()
    holder.commit()  # A's apply commits under its lease; only then does B get it
    thread.join(30)
    assert done.is_set()
    assert watcher.execute("SELECT worker, token FROM partition_leases WHERE part = ?",
                           (part,)) == [("B", 2)]
    for conn in (holder, taker, watcher):
        conn.close()


def test_an_operator_command_commits_only_under_the_lease(postgres_server: Postgres) -> None:
    db = _db(postgres_server)
    store = "S001"
    part = store_partition(store, PARTS)
    admin = db.connect()
    admin.execute("UPDATE partition_leases SET worker = 'A', token = 1 WHERE part = ?", (part,))
    fencing = Fencing("A", PARTS)
    fencing.held[part] = 1
    core = Core(db.connect(), owns=fencing.owns)
    core.fencing = fencing
    adjust = [{"type": "stock.adjust", "data": {"reason": "count"},
               "stock": [{"sku": "A-1", "delta": 5}]}]
    issued, _ = core.issue(store, adjust)
    assert [c["cseq"] for c in issued] == [1]
    admin.execute("UPDATE partition_leases SET worker = 'B', token = 2 WHERE part = ?", (part,))
    with pytest.raises(InvalidCommandError, match="moved to another worker"):
        core.issue(store, adjust)
    assert admin.execute("SELECT MAX(cseq) FROM commands WHERE store = ?", (store,)) == [(1,)]
    with pytest.raises(InvalidCommandError, match="another central"):
        core.issue(store, adjust)
    core.conn.close()
    admin.close()
