"""Model-based test: the real store ledger and the real central core, in one process.

A hypothesis ``RuleBasedStateMachine`` interleaves facts recorded at the store, central
commands (stock adjustments, catalog changes, resync requests), lossy and duplicated
delivery both ways, disconnects and reconnects (births), agent restarts (the ledger closed
and reopened, messages in flight lost), resyncs and epoch changes. Nothing is mocked: the
store side is ``edge_agent.ledger.Ledger`` + ``LedgerStorePort`` + ``sync.inbox.CommandInbox``
+ ``edge_agent.resync.apply_snapshot``; central is ``central.core.Core`` on SQLite with
``central.queries.snapshot``. Only the broker is replaced by two in-memory queues that
may lose, duplicate and replay messages, exactly what PROTOCOL says the broker may do.

The model is a plain dict of stock per SKU. Invariants after every step:

- the store's stock is every fact it recorded plus every command up to its applied cseq;
- central's stock is the facts it applied (per epoch, up to its watermark) plus every
  command it issued;
- every event central holds is byte-identical to the store's event of that (epoch, seq),
  and central never applied beyond the store's last seq;
- the store's event watermark never exceeds what central applied.

At quiescence (everything delivered, link up; as a step, and always at the end of a run),
both stocks equal the model, the two PROTOCOL §7 digests are equal, every command is
applied, and every reservation central asked to cancel was released by the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from central import queries
from central.core import Core
from central.errors import InvalidCommandError
from central.runs import stock_cells
from central.storage import Database
from edge_agent.ledger import Ledger, Tx
from edge_agent.resync import apply_snapshot
from edge_agent.sync_adapter import LedgerStorePort
from sync.inbox import CommandInbox
from sync.messages import Snapshot
from sync.wire import canonical_json, digest_lines, now_ts

STORE = "S001"
ROOT = "retail"
SKUS = ["A-1", "B-2", "C-3"]
T = f"{ROOT}/v1/stores/{STORE}"


class StoreCentralMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory(prefix="model-")
        self.path = Path(self._dir.name)
        self.now = 1000.0
        db = Database(f"sqlite:///{self.path / 'central.db'}")
        db.create_schema()
        self.core = Core(db.connect(), root=ROOT, resend_after=5.0, clock=lambda: self.now)
        self.loop = asyncio.new_event_loop()
        self.ledger: Ledger | None = None
        self.to_central: list[tuple[str, bytes]] = []
        self.to_store: list[tuple[str, bytes]] = []
        self.delivered_to_central: list[tuple[str, bytes]] = []
        self.delivered_to_store: list[tuple[str, bytes]] = []
        self.connected = True
        self.boot = itertools.count(1)
        self.command_deltas: dict[int, dict[str, int]] = {}
        self.command_reserve: dict[int, dict[str, int]] = {}
        self.reservations = itertools.count(1)
        self.open_reservations: list[str] = []
        self.cancelled: set[str] = set()
        self.issued = 0
        self.facts = itertools.count(1)

    # -- plumbing --------------------------------------------------------------------------
    def _open_store(self) -> None:
        self.ledger = Ledger.open(self.path / "ledger.db", STORE)
        self.port = LedgerStorePort(self.ledger)
        self.inbox = CommandInbox(self.port, resend_after=5.0, clock=lambda: self.now)
        self.boot_id = f"boot-{next(self.boot)}"

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _route(self, publishes: list[Any]) -> None:
        for pub in publishes:
            if self.connected:
                self.to_store.append((pub.topic, pub.payload))

    def _central(self, topic: str, payload: bytes) -> None:
        self._route(self.core.process([(topic, payload, False)]))

    def _birth(self) -> None:
        assert self.ledger is not None
        epochs = self.run(self.port.epochs())
        body: dict[str, Any] = {"v": 1, "store": STORE, "state": "online",
                                "epoch": self.ledger.current_epoch, "boot_id": self.boot_id,
                                "last_seq": epochs[-1].last_seq, "agent": "model",
                                "ts": now_ts()}
        if self.run(self.port.has_resynced()):
            body["applied_cseq"] = self.run(self.port.applied_cseq())
        self.to_central.append((f"{T}/status", canonical_json(body)))

    def _commands_ack(self, through: int) -> None:
        assert self.ledger is not None
        self.to_central.append((f"{T}/commands/ack", canonical_json(
            {"v": 1, "store": STORE, "epoch": self.ledger.current_epoch,
             "through_cseq": through, "ts": now_ts()})))

    def _store_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        assert self.ledger is not None
        return self.ledger.read_blocking(lambda c: list(c.execute(sql, params).fetchall()))

    def _store_stock(self) -> dict[str, tuple[int, int]]:
        return {str(s): (int(o), int(r)) for s, o, r in
                self._store_rows("SELECT sku, on_hand, reserved FROM stock")
                if o or r}

    def _central_stock(self) -> dict[str, tuple[int, int]]:
        return {sku: (o, r) for sku, (o, r) in stock_cells(self.core.conn, STORE).items()
                if o or r}

    def _store_events(self) -> dict[tuple[str, int], bytes]:
        rows = self._store_rows(
            "SELECT e.epoch, ev.seq, ev.payload FROM events ev JOIN epochs e "
            "ON e.ordinal = ev.epoch_ordinal")
        return {(str(e), int(s)): bytes(p) for e, s, p in rows}

    # -- setup -------------------------------------------------------------------------------
    @initialize()
    def start(self) -> None:
        self._open_store()
        self._birth()
        self.resync()

    def teardown(self) -> None:
        try:
            if self.ledger is not None:
                self.quiesce()  # every run ends converged, whatever its last step was
        finally:
            if self.ledger is not None:
                self.ledger.close()
            self.loop.close()
            self._dir.cleanup()

    # -- facts at the store ------------------------------------------------------------------
    @rule(sku=st.sampled_from(SKUS), qty=st.integers(1, 4),
          kind=st.sampled_from(["sale", "receipt", "return", "count", "adjustment",
                                "visit", "future.type"]))
    def record_fact(self, sku: str, qty: int, kind: str) -> None:
        assert self.ledger is not None
        n = next(self.facts)

        def op(tx: Tx) -> None:
            if kind == "sale":
                tx.append("sale", {"n": n}, stock=[(sku, -qty)])
            elif kind in ("receipt", "return"):
                tx.append(kind, {"n": n}, stock=[(sku, qty)])
            elif kind == "adjustment":
                tx.append(kind, {"n": n, "reason": "damage"}, stock=[(sku, -qty)])
            elif kind == "count":
                expected = tx.on_hand(sku)
                tx.append("count", {"n": n, "lines": [
                    {"sku": sku, "counted": qty, "expected": expected}]},
                    stock=[(sku, qty - expected)] if qty != expected else [])
            else:
                tx.append(kind, {"n": n})  # no stock lists: changes nothing

        self.ledger.write_blocking(op)

    # -- central commands --------------------------------------------------------------------
    def _issue(self, spec: dict[str, Any], reserve: dict[str, int] | None = None) -> None:
        issued, publishes = self.core.issue(STORE, [spec])
        self._route(publishes)
        for command in issued:
            self.issued = max(self.issued, command["cseq"])
            self.command_deltas[command["cseq"]] = {
                d["sku"]: d["delta"] for d in spec.get("stock", [])}
            self.command_reserve[command["cseq"]] = dict(reserve or {})

    @rule(sku=st.sampled_from(SKUS), qty=st.integers(1, 3))
    def central_reserve(self, sku: str, qty: int) -> None:
        rid = f"R-{next(self.reservations)}"
        self._issue({"type": "reservation.create", "data": {
            "reservation_id": rid, "order_ref": f"O-{rid}",
            "lines": [{"sku": sku, "qty": qty}]}}, reserve={sku: qty})
        self.open_reservations.append(rid)

    @precondition(lambda self: self.open_reservations)
    @rule(index=st.integers(0, 20))
    def central_cancel(self, index: int) -> None:
        """A cancel request: only the store takes the reservation down (an event)."""
        rid = self.open_reservations.pop(index % len(self.open_reservations))
        with contextlib.suppress(InvalidCommandError):  # already released at central
            self._issue({"type": "reservation.cancel", "data": {"reservation_id": rid}})
            self.cancelled.add(rid)

    @rule(sku=st.sampled_from(SKUS), delta=st.integers(-5, 9).filter(bool))
    def central_adjust(self, sku: str, delta: int) -> None:
        self._issue({"type": "stock.adjust", "data": {"reason": "replenishment"},
                     "stock": [{"sku": sku, "delta": delta}]})

    @rule(sku=st.sampled_from(SKUS))
    def central_catalog(self, sku: str) -> None:
        self._issue({"type": "catalog.upsert", "data": {"items": [
            {"sku": sku, "name": sku, "gtins": [], "price": "1.00", "currency": "EUR",
             "uom": "unit", "active": True}]}})

    @rule()
    def central_resync_command(self) -> None:
        self._issue({"type": "resync"})

    # -- the pipe ----------------------------------------------------------------------------
    @rule(lose=st.booleans())
    def store_sends_events(self, lose: bool) -> None:
        """Go-back-N from the stored watermark: oldest epoch with pending events first."""
        rows = self._store_rows("SELECT epoch, last_seq, acked_seq FROM epochs ORDER BY ordinal")
        events = self._store_events()
        for epoch, last, acked in rows:
            if last > acked:
                seqs = range(acked + 1, min(last, acked + 7) + 1)
                batch = b"".join([
                    b'{"epoch":', orjson.dumps(epoch), b',"events":[',
                    b",".join(events[(epoch, s)] for s in seqs),
                    b'],"store":"', STORE.encode(), b'","v":1}'])
                if self.connected and not lose:
                    self.to_central.append((f"{T}/events", batch))
                return

    @precondition(lambda self: self.to_central)
    @rule(index=st.integers(0, 50), duplicate=st.booleans())
    def deliver_to_central(self, index: int, duplicate: bool) -> None:
        topic, payload = self.to_central[index % len(self.to_central)]
        if not duplicate:
            self.to_central.remove((topic, payload))
        self.delivered_to_central.append((topic, payload))
        self._central(topic, payload)

    @precondition(lambda self: self.to_store)
    @rule(index=st.integers(0, 50), duplicate=st.booleans())
    def deliver_to_store(self, index: int, duplicate: bool) -> None:
        topic, payload = self.to_store[index % len(self.to_store)]
        if not duplicate:
            self.to_store.remove((topic, payload))
        self.delivered_to_store.append((topic, payload))
        self._store_receives(topic, payload)

    def _store_receives(self, topic: str, payload: bytes) -> None:
        assert self.ledger is not None
        if topic.endswith("/events/ack"):
            ack = orjson.loads(payload)
            epochs = {e.epoch: e for e in self.run(self.port.epochs())}
            mark = epochs.get(ack["epoch"])
            if mark is not None and ack["through_seq"] <= mark.last_seq:
                self.run(self.port.mark_acked(ack["epoch"], ack["through_seq"]))
        elif topic.endswith("/commands"):
            result = self.run(self.inbox.handle_payload(payload))
            if result is not None and result.resync:
                self.resync()
            elif result is not None and result.ack is not None:
                self._commands_ack(result.ack)

    @precondition(lambda self: self.delivered_to_central or self.delivered_to_store)
    @rule(index=st.integers(0, 500), to_store=st.booleans())
    def replay_old_message(self, index: int, to_store: bool) -> None:
        """The broker may redeliver anything it ever delivered (QoS 1 DUP)."""
        old = self.delivered_to_store if to_store else self.delivered_to_central
        if not old:
            return
        topic, payload = old[index % len(old)]
        if to_store:
            self._store_receives(topic, payload)
        else:
            self._central(topic, payload)

    @rule()
    def disconnect(self) -> None:
        self.connected = False
        self.to_central.clear()
        self.to_store.clear()
        self._central(f"{T}/status", canonical_json(
            {"v": 1, "store": STORE, "state": "offline", "epoch": "x", "boot_id": self.boot_id}))

    @rule()
    def reconnect(self) -> None:
        self.connected = True
        self._birth()

    @rule(seconds=st.sampled_from([1.0, 6.0, 20.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self._route(self.core.tick())

    @rule()
    def restart_agent(self) -> None:
        assert self.ledger is not None
        self.ledger.close()
        self.to_central.clear()
        self.to_store.clear()
        self._open_store()
        if self.connected:
            self._birth()

    @rule()
    def resync(self) -> None:
        """§5.3: fetch central's snapshot, apply it with our unacknowledged events."""
        assert self.ledger is not None
        snapshot = Snapshot.model_validate(queries.snapshot(self.core.conn, STORE))
        self.ledger.write_blocking(lambda tx: apply_snapshot(tx, snapshot))
        self.inbox.clear_gap()
        self._commands_ack(snapshot.through_cseq)

    @rule()
    def epoch_change(self) -> None:
        """A lost history / restore: every new fact gets a new epoch, and the store resyncs."""
        assert self.ledger is not None

        def op(tx: Tx) -> None:
            tx.new_epoch("model: lost history")
            tx.set_meta("resync_needed", "1")
            tx.set_meta("resync_reason", "lost history")

        self.ledger.write_blocking(op)
        self.resync()

    # -- invariants --------------------------------------------------------------------------
    def _expected_store(self) -> dict[str, tuple[int, int]]:
        """(on hand, reserved) per SKU: every event of the store plus every command up to
        its applied cseq, non-zero rows only."""
        on_hand: Counter[str] = Counter()
        reserved: Counter[str] = Counter()
        for payload in self._store_events().values():
            event = orjson.loads(payload)
            for d in event.get("stock", []):
                on_hand[d["sku"]] += d["delta"]
            for d in event.get("reserve", []):
                reserved[d["sku"]] += d["delta"]
        applied = int((self._store_rows(
            "SELECT value FROM meta WHERE key = 'applied_cseq'") or [[0]])[0][0])
        for cseq in range(1, applied + 1):
            for sku, delta in self.command_deltas.get(cseq, {}).items():
                on_hand[sku] += delta
            for sku, delta in self.command_reserve.get(cseq, {}).items():
                reserved[sku] += delta
        return {k: (on_hand[k], reserved[k]) for k in set(on_hand) | set(reserved)
                if on_hand[k] or reserved[k]}

    @invariant()
    def store_stock_is_facts_plus_applied_commands(self) -> None:
        if self.ledger is None:
            return
        assert self._store_stock() == self._expected_store()

    @invariant()
    def central_stock_is_applied_facts_plus_issued_commands(self) -> None:
        if self.ledger is None:
            return
        on_hand: Counter[str] = Counter()
        reserved: Counter[str] = Counter()
        for (body,) in self.core.conn.execute(
                "SELECT body FROM events WHERE store = ? AND quarantine IS NULL", (STORE,)):
            event = orjson.loads(body)
            for d in event.get("stock", []):
                on_hand[d["sku"]] += d["delta"]
            for d in event.get("reserve", []):
                reserved[d["sku"]] += d["delta"]
        for cseq, deltas in self.command_deltas.items():
            for sku, delta in deltas.items():
                on_hand[sku] += delta
            for sku, delta in self.command_reserve[cseq].items():
                reserved[sku] += delta
        assert self._central_stock() == {k: (on_hand[k], reserved[k])
                                         for k in set(on_hand) | set(reserved)
                                         if on_hand[k] or reserved[k]}

    @invariant()
    def central_holds_only_the_stores_events(self) -> None:
        if self.ledger is None:
            return
        store_events = self._store_events()
        for epoch, seq, body in self.core.conn.execute(
                "SELECT epoch, seq, body FROM events WHERE store = ?", (STORE,)):
            assert store_events.get((epoch, int(seq))) == body.encode(), (epoch, seq)
        marks = {e: (last, acked) for e, last, acked in self._store_rows(
            "SELECT epoch, last_seq, acked_seq FROM epochs")}
        for epoch, applied in self.core.conn.execute(
                "SELECT epoch, applied_seq FROM epochs WHERE store = ?", (STORE,)):
            assert epoch in marks
            assert applied <= marks[epoch][0]
            assert marks[epoch][1] <= applied
        known = {e for e, _ in self.core.conn.execute(
            "SELECT epoch, applied_seq FROM epochs WHERE store = ?", (STORE,))}
        for epoch, (_, acked) in marks.items():
            assert acked == 0 or epoch in known

    # -- quiescence --------------------------------------------------------------------------
    @rule()
    def quiesce(self) -> None:
        """Link up, no faults: deliver until nothing moves; then everything converges."""
        self.connected = True
        self._birth()
        for _ in range(400):
            self.store_sends_events(lose=False)
            if not self.to_central and not self.to_store:
                break
            while self.to_central or self.to_store:
                while self.to_central:
                    self._central(*self.to_central.pop(0))
                while self.to_store:
                    self._store_receives(*self.to_store.pop(0))
            self.now += 6
            self._route(self.core.tick())
        pending = self._store_rows("SELECT count(*) FROM epochs WHERE last_seq > acked_seq")
        assert pending[0][0] == 0
        applied = int((self._store_rows(
            "SELECT value FROM meta WHERE key = 'applied_cseq'") or [[0]])[0][0])
        assert applied == self.issued
        assert self._store_stock() == self._expected_store() == self._central_stock()
        # every cancel central asked for was acted on by the store (its release event
        # closed the reservation at both ends)
        if self.cancelled:
            marks = ",".join("?" * len(self.cancelled))
            at_central = self.core.conn.execute(
                f"SELECT reservation_id, state FROM reservations WHERE store = ? "
                f"AND reservation_id IN ({marks})", (STORE, *sorted(self.cancelled)))
            assert all(state != "open" for _, state in at_central), at_central
            at_store = self._store_rows(
                f"SELECT reservation_id, status FROM reservations "
                f"WHERE reservation_id IN ({marks})", tuple(sorted(self.cancelled)))
            assert all(status != "open" for _, status in at_store), at_store
        assert digest_lines((s, o, r) for s, (o, r) in self._store_stock().items()) == \
            digest_lines((s, o, r) for s, (o, r) in self._central_stock().items())


StoreCentralMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_store_and_central_converge = StoreCentralMachine.TestCase
