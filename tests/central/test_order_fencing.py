"""Order brokering under store ownership (issue 21), against a real PostgreSQL with two
workers: an order write (``Core.run_write``) commits only while the worker holds the lease
of every store it touches; a worker that lost a lease rolls back, sends nothing and gets
:class:`central.fencing.Fenced`, which the order API maps to ``store_fenced``."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import orjson
import pytest

from central.config import store_partition
from central.core import Core, Inbound, Publish
from central.fencing import Fenced, Fencing
from central.omni_config import OmniSettings
from central.orders import OmniEngine
from central.ownership_schema import OWNERSHIP_TABLES
from central.storage import Connection, Database
from tests.central.conftest import event, wait_until
from tests.helpers.postgres import Postgres

pytestmark = pytest.mark.postgres

PARTS = 8
STORE = "S001"
OTHER = "S002"  # another partition (2; S001 is in 3)
SETTINGS = {"accept_within": 60, "rebroker_every": 30,
            "stores": {STORE: {"lat": 52.37, "lon": 4.90}, OTHER: {"lat": 52.09, "lon": 5.12}}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Worker:
    """One central worker's writer: core, order engine and fencing on its own connection."""

    def __init__(self, db: Database, name: str, clock: Clock) -> None:
        self.fencing = Fencing(name, PARTS)
        self.engine = OmniEngine(OmniSettings.model_validate(SETTINGS), wall=clock,
                                 owns=self.fencing.owns)
        self.core = Core(db.connect(), owns=self.fencing.owns, watcher=self.engine)
        self.core.fencing = self.fencing
        self.engine.attach(self.core.conn)

    def take(self, admin: Connection, token: int, store: str = STORE) -> None:
        part = store_partition(store, PARTS)
        admin.execute("UPDATE partition_leases SET worker = ?, token = ? WHERE part = ?",
                      (self.fencing.worker, token, part))
        self.fencing.held[part] = token
        self.core.load()
        self.engine.rolled_back()  # reload the engine's state as a new owner does

    def order(self, order_id: str) -> tuple[dict[str, Any], list[Publish]]:
        request = {"order_id": order_id, "channel": "web", "fulfilment": "ship",
                   "lines": [{"line_no": 1, "sku": "A-1", "qty": 1}],
                   "ship_to": {"lat": 52.36, "lon": 4.89}, "may_split": False}
        result, out = self.core.run_write(lambda tx: self.engine.submit(tx, request))
        order: dict[str, Any] = result[0]
        return order, out


def _setup(postgres_server: Postgres) -> tuple[Database, Connection]:
    db = Database(postgres_server.new_database())
    db.create_schema()
    admin = db.connect()
    for statement in OWNERSHIP_TABLES:
        admin.execute(statement)
    admin.executemany("INSERT INTO partition_leases (part) VALUES (?)",
                      [(p,) for p in range(PARTS)])
    return db, admin


def _receipt(epoch: str, seq: int, qty: int, store: str = STORE) -> Inbound:
    body = {"v": 1, "store": store, "epoch": epoch,
            "events": [event(seq, delta=qty, kind="receipt")]}
    return Inbound(f"retail/v1/stores/{store}/events", orjson.dumps(body), False)


def _commands(admin: Connection) -> list[tuple[Any, ...]]:
    return admin.execute("SELECT cseq, type FROM commands WHERE store = ? ORDER BY cseq",
                         (STORE,))


def test_a_worker_that_lost_the_lease_cannot_commit_an_order(
        postgres_server: Postgres) -> None:
    db, admin = _setup(postgres_server)
    clock = Clock()
    a = Worker(db, "A", clock)
    a.take(admin, 1)
    a.core.process([_receipt(str(uuid.uuid4()), 1, 5)])
    first, _ = a.order("O1")
    assert first["state"] == "brokered"
    assert _commands(admin) == [(1, "order.assign")]

    b = Worker(db, "B", clock)
    b.take(admin, 2)  # A does not know yet: it still believes it holds the partition
    assert a.fencing.owns(STORE)
    with pytest.raises(Fenced):
        a.order("O2")
    assert not a.fencing.owns(STORE)
    assert a.fencing.fenced == 1
    assert admin.execute("SELECT order_id FROM omni_orders ORDER BY order_id") == [("O1",)]
    assert _commands(admin) == [(1, "order.assign")]  # nothing of A's write committed
    # A knows now: a command it would send to the store is refused before it is written
    cancel = [{"type": "order.cancel", "data": {
        "order_id": "O1", "reservation_id": "ord-O1-1", "reason": "operator"}}]
    with pytest.raises(Fenced, match="not held by worker A"):
        a.core.run_write(lambda tx: tx.issue(STORE, cancel))
    assert _commands(admin) == [(1, "order.assign")]

    second, _ = b.order("O2")  # the owner takes it
    assert second["state"] == "brokered"
    assert [c[0] for c in _commands(admin)] == [1, 2]

    # the accept timers: the old owner leaves the store's deadlines to the new one
    clock.now += 61
    assert a.engine.tick(a.core.run_write) == []
    assert a.fencing.fenced == 2  # unchanged: A did not even try
    assert [c[0] for c in _commands(admin)] == [1, 2]
    b.engine.tick(b.core.run_write)
    assert [c[1] for c in _commands(admin)][2:] == ["order.cancel", "order.cancel"]
    for worker in (a, b):
        worker.core.conn.close()
    admin.close()


def test_a_takeover_waits_for_the_order_write_in_flight(postgres_server: Postgres) -> None:
    db, admin = _setup(postgres_server)
    clock = Clock()
    a = Worker(db, "A", clock)
    a.take(admin, 1)
    a.core.process([_receipt(str(uuid.uuid4()), 1, 5)])
    taker = db.connect()
    pid = taker.execute("SELECT pg_backend_pid()")[0][0]
    done = threading.Event()

    def take_over() -> None:
        taker.execute("UPDATE partition_leases SET worker = 'B', token = 2 WHERE part = ?",
                      (store_partition(STORE, PARTS),))
        done.set()

    def in_flight(tx: Any) -> Any:
        result = a.engine.submit(tx, {
            "order_id": "O1", "channel": "web", "fulfilment": "ship",
            "lines": [{"line_no": 1, "sku": "A-1", "qty": 1}],
            "ship_to": {"lat": 52.36, "lon": 4.89}, "may_split": False})
        thread.start()
        wait_until(lambda: admin.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?", (pid,))
            == [("Lock",)], 30, "takeover blocked on the lease row")
        assert not done.is_set()
        return result

    thread = threading.Thread(target=take_over, name="test.takeover")
    a.core.run_write(in_flight)  # commits under A's lease; only then does B get it
    thread.join(30)
    assert done.is_set()
    assert [c[1] for c in _commands(admin)] == ["order.assign"]
    with pytest.raises(Fenced):
        a.order("O2")
    for conn in (a.core.conn, taker):
        conn.close()
    admin.close()



def test_a_worker_without_leases_takes_orders_but_sends_no_store_anything(
        postgres_server: Postgres) -> None:
    db, admin = _setup(postgres_server)
    clock = Clock()
    owner = Worker(db, "A", clock)
    owner.take(admin, 1)
    owner.core.process([_receipt(str(uuid.uuid4()), 1, 5)])
    idle = Worker(db, "C", clock)  # holds no partition at all (e.g. just started)
    order, _ = idle.order("O1")
    assert order["state"] == "queued"  # no store of its own has the stock
    assign = [{"type": "order.assign", "data": {
        "order_id": "O1", "reservation_id": "ord-O1-1", "channel": "web",
        "fulfilment": "ship", "lines": [{"line_no": 1, "sku": "A-1", "qty": 1}],
        "accept_by": "2027-01-15T08:00:00.000Z"}}]
    with pytest.raises(Fenced, match="not held by worker C"):
        idle.core.run_write(lambda tx: tx.issue(STORE, assign))
    assert _commands(admin) == []
    for conn in (owner.core.conn, idle.core.conn):
        conn.close()
    admin.close()


def test_two_workers_never_broker_one_queued_order_twice(postgres_server: Postgres) -> None:
    """A queued order known to both workers, stock arriving at a store of each: the one
    that brokers it first holds the order row until it commits; the other then finds the
    order covered and assigns nothing (PostgreSQL: ``FOR UPDATE`` of the order row)."""
    db, admin = _setup(postgres_server)
    clock = Clock()
    a = Worker(db, "A", clock)
    a.take(admin, 1)  # S001
    b = Worker(db, "B", clock)
    b.take(admin, 1, store=OTHER)
    order, _ = a.order("O1")
    assert order["state"] == "queued"  # no stock anywhere yet
    b.engine.rolled_back()  # B knows the queued order, as after its start
    a.core.process([_receipt(str(uuid.uuid4()), 1, 5)])
    b.core.process([_receipt(str(uuid.uuid4()), 1, 5, OTHER)])
    clock.now += 31  # both rebroker their queued orders on their next tick
    pid = b.core.conn.execute("SELECT pg_backend_pid()")[0][0]
    failed: list[BaseException] = []

    def b_ticks() -> None:
        try:
            b.engine.tick(b.core.run_write)
        except Exception as exc:  # noqa: BLE001 - asserted below
            failed.append(exc)

    rebroker = threading.Thread(target=b_ticks, name="test.rebroker")

    def a_in_flight(fn: Any) -> tuple[Any, list[Publish]]:
        def hold(tx: Any) -> Any:
            result = fn(tx)  # A has brokered O1 to S001, not committed yet
            rebroker.start()
            wait_until(lambda: admin.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?", (pid,))
                == [("Lock",)], 30, "B waits for A's order write")
            return result
        return a.core.run_write(hold)

    a.engine.tick(a_in_flight)
    rebroker.join(30)
    assert not rebroker.is_alive()
    assert failed == []  # without the lock: B assigned too, and its commit failed
    assert admin.execute("SELECT store, state FROM omni_assignments WHERE order_id = 'O1'"
                         ) == [(STORE, "assigned")]
    assert [c[1] for c in admin.execute(
        "SELECT cseq, type FROM commands WHERE store = ? ORDER BY cseq", (OTHER,))] == []
    for conn in (a.core.conn, b.core.conn):
        conn.close()
    admin.close()
