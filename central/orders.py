"""The omnichannel order engine on the central's writer thread: intake, brokering,
re-brokering, and every order's state and history from the stores' events.

It is the core's :class:`central.hooks.Watcher`: it hears applied events and contacts,
writes its rows inside the writer's group transaction and issues ``order.assign`` /
``order.cancel`` through the same single-writer command path as operator commands
(``Tx.issue`` → :func:`central.engine.planners.plan`). Brokering reads the exact
stock (stock table plus the deltas not yet projected), so two orders can never be
promised the same unit.

Order states: ``queued`` (no store can fill it yet) → ``brokered`` → ``accepted`` →
``picked`` → ``packed`` → ``ready`` → ``collected`` | ``shipped``; or ``cancelled``.
A split order is in the least advanced state of its parts.

Over ~400 lines on purpose: this module is one job, the engine as the core's watcher and
the operator's order actions on one state; its other jobs already live apart (folding the
stores' events: :mod:`central.order_events`; tables: :mod:`central.orders_db`; scoring a
store: :mod:`central.brokering`), and splitting the brokering steps off would only
scatter one state machine's transitions across files.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from central.atp import StoreFacts
from central.brokering import Candidate, Request, broker
from central.errors import OrderConflict, OrderError, OrderNotCancellable, UnknownOrder
from central.hooks import Tx
from central.omni_config import OmniSettings, StoreAttrs
from central.omni_state import OmniState, utc_day
from central.order_events import STAGES, StoreEvents
from central.orders_db import ACTIVE, add_history, assignments, create_tables, order_row
from central.storage import Connection
from sync.wire import now_ts

_ORDER_STAGE = ("brokered", "accepted", "picked", "packed", "ready")
_FINAL = frozenset({"collected", "shipped", "cancelled"})
REBROKER_BATCH = 200
"""Queued orders tried per timer step (the rest on the next one)."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def request_sha(request: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()


class OmniEngine(StoreEvents):
    types = frozenset({"order.accepted", "order.rejected", "order.picked", "order.packed",
                       "order.ready", "fulfilment", "reservation.released", "count"})

    def __init__(self, settings: OmniSettings, wall: Callable[[], float] = time.time,
                 owns: Callable[[str], bool] | None = None) -> None:
        self.settings = settings
        self.state = OmniState(settings, wall)
        self.wall = wall
        self.owns = owns or (lambda _store: True)
        self._conn: Connection | None = None
        self._skus: set[str] = set()
        self._stores: set[str] = set()
        self._deadlines: dict[str, tuple[float, str, str]] = {}
        self._rebroker_due = False
        self._next_rebroker = 0.0
        self._next_scan = 0.0
        self._stale_noted: dict[str, float] = {}

    def attach(self, conn: Connection) -> None:
        """Create the tables and load the state (the writer's connection, at start)."""
        self._conn = conn
        create_tables(conn)
        self._reload()

    def _reload(self) -> None:
        if self._conn is None:
            return
        self.state.load(self._conn)
        self._deadlines = {rid: (float(by), oid, store) for rid, oid, store, by in
                           self._conn.execute("SELECT reservation_id, order_id, store, "
                                              "accept_by FROM omni_assignments WHERE "
                                              "state = 'assigned'")}

    # ------------------------------------------------------------------ what the core tells
    def on_event(self, tx: Tx, store: str, kind: str, event: dict[str, Any]) -> None:
        data = event.get("data")
        if isinstance(data, dict):
            self._on_store_event(tx, store, kind, data, now=self.wall(), ts=now_ts())

    def on_moves(self, store: str, kind: str, moves: Sequence[tuple[str, int]],
                 holds: Sequence[tuple[str, int]]) -> None:
        del holds  # the changes feed hears of them from the projection
        queued = self.state.queued
        now = self.wall()
        for sku, delta in moves:
            if delta > 0 and sku in queued:
                self._rebroker_due = True
            elif delta < 0 and kind == "sale":
                self.state.sold(store, {sku: -delta}, now)

    def on_heads(self, store: str, heads: Sequence[Any]) -> None:
        """Hot path: the units each SKU sold (sell-through), and, only while orders wait
        for stock, whether some arrived."""
        sold: dict[str, int] = {}
        get = sold.get
        for head in heads:
            if head.type == "sale":
                for d in head.stock:
                    if d.delta < 0:
                        sold[d.sku] = get(d.sku, 0) - d.delta
        if sold:
            self.state.sold(store, sold, self.wall())
        queued = self.state.queued
        if queued and not self._rebroker_due:
            self._rebroker_due = any(d.delta > 0 and d.sku in queued
                                     for head in heads for d in head.stock)

    def on_projected(self, cells: Mapping[str, Mapping[str, Sequence[int]]]) -> None:
        """The stock table moved: the changes feed names those SKUs (readers see the new
        stock from now on)."""
        skus = {sku for per_store in cells.values() for sku in per_store}
        if skus:
            self.state.note(f"sku:{sku}" for sku in skus)

    def on_command(self, store: str, command: dict[str, Any]) -> None:
        for name in ("stock", "reserve"):
            for line in command[name]:
                self._skus.add(line["sku"])
                if name == "stock" and line["delta"] > 0 and line["sku"] in self.state.queued:
                    self._rebroker_due = True

    def before_commit(self, tx: Tx, contacts: Iterable[str]) -> None:
        """The stores heard from in this group are fresh as of now."""
        del tx
        now = self.wall()
        conn = self._db()
        heard = sorted(contacts)
        if heard:
            with self.state.lock:
                for store in heard:
                    if self.state.contact.get(store, 0.0) < now - self.settings.stale_after:
                        self._stores.add(store)  # back from silence: its ATP rises
                    self.state.contact[store] = now
            conn.executemany(
                "INSERT INTO omni_contact (store, last_contact) VALUES (?, ?) ON CONFLICT "
                "(store) DO UPDATE SET last_contact = excluded.last_contact",
                [(store, now) for store in heard])

    def committed(self) -> None:
        keys = [f"sku:{s}" for s in self._skus] + [f"store:{s}" for s in self._stores]
        self._skus.clear()
        self._stores.clear()
        if keys:
            self.state.note(keys)

    def rolled_back(self) -> None:
        self._skus.clear()
        self._stores.clear()
        self._reload()

    def tick(self, run_write: Callable[[Callable[[Tx], Any]], tuple[Any, list[Any]]]
             ) -> list[Any]:
        now = self.wall()
        if now >= self._next_scan:
            self._next_scan = now + 5.0
            self._scan_silence(now)
        expired = [rid for rid, (by, _, store) in self._deadlines.items()
                   if by <= now and self.owns(store)]  # another worker's store: its timer
        rebroker = bool(self.state.queued_orders) and (
            self._rebroker_due or now >= self._next_rebroker)
        if not expired and not rebroker:
            return []
        self._rebroker_due = False
        self._next_rebroker = now + self.settings.rebroker_every
        _, out = run_write(lambda tx: self._timer(tx, expired, rebroker=rebroker))
        return out

    def _scan_silence(self, now: float) -> None:
        """A silent store's ATP keeps falling: tell the feed now and then."""
        stale = self.settings.stale_after
        changed = []
        with self.state.lock:
            for store, last in self.state.contact.items():
                if now - last >= stale and now - self._stale_noted.get(store, 0.0) >= 60:
                    self._stale_noted[store] = now
                    changed.append(f"store:{store}")
        if changed:
            self.state.note(changed)

    # ------------------------------------------------------------------ operations
    def submit(self, tx: Tx, request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Take an order (idempotent on ``order_id``) and broker it. (order, created)."""
        conn = self._db()
        order_id = request["order_id"]
        sha = request_sha(request)
        existing = order_row(conn, order_id)
        if existing is not None:
            if existing["sha"] != sha:
                raise OrderConflict(f"order {order_id} exists with a different request")
            existing.pop("sha")
            return existing, False
        postcode = (request.get("ship_to") or {}).get("postcode")
        if (request["fulfilment"] == "ship" and postcode is not None
                and self._destination(request) is None):
            raise OrderError(f"postcode {postcode!r} is not in the postcode table")
        ts = now_ts()
        conn.execute("INSERT INTO omni_orders (order_id, sha, channel, body, state, created, "
                     "updated) VALUES (?, ?, ?, ?, 'received', ?, ?)",
                     (order_id, sha, request["channel"], orjson.dumps(request).decode(), ts,
                      ts))
        add_history(conn, order_id, ts, event="received", store=None,
                    detail={"channel": request["channel"]})
        self._broker(tx, order_id, self.wall(), ts)
        row = order_row(conn, order_id)
        assert row is not None  # noqa: S101 - inserted just above
        row.pop("sha")
        return row, True

    def cancel(self, tx: Tx, order_id: str, reason: str) -> dict[str, Any]:
        conn = self._db()
        row = order_row(conn, order_id)
        if row is None:
            raise UnknownOrder(f"no order {order_id}")
        if row["state"] == "cancelled":
            return {"order_id": order_id, "state": "cancelled"}
        parts = assignments(conn, order_id)
        if row["state"] in _FINAL or any(a["state"] == "fulfilled" for a in parts):
            raise OrderNotCancellable(f"order {order_id} is already handed over")
        ts = now_ts()
        for a in parts:
            if a["state"] in ACTIVE:
                self._cancel_part(tx, order_id, a["reservation_id"], a["store"], reason)
        conn.execute("UPDATE omni_orders SET state = 'cancelled', updated = ? WHERE "
                     "order_id = ?", (ts, order_id))
        add_history(conn, order_id, ts, event="cancelled", store=None,
                    detail={"reason": reason})
        self._set_queued(order_id, None)
        return {"order_id": order_id, "state": "cancelled"}

    def set_store(self, tx: Tx, store: str, attrs: StoreAttrs) -> dict[str, Any]:
        """An operator sets a store's brokering attributes (kept over the config's)."""
        del tx  # a write transaction is open: the row commits with it
        self._db().execute("INSERT INTO omni_stores (store, attrs) VALUES (?, ?) ON CONFLICT "
                           "(store) DO UPDATE SET attrs = excluded.attrs",
                           (store, attrs.model_dump_json()))
        with self.state.lock:
            self.state.attrs[store] = attrs
        self._stores.add(store)
        self._rebroker_due = True
        return {"store": store, **attrs.model_dump()}

    def _cancel_part(self, tx: Tx, order_id: str, rid: str, store: str, reason: str) -> None:
        tx.issue(store, [{"type": "order.cancel", "data": {
            "order_id": order_id, "reservation_id": rid, "reason": reason}}])
        self._db().execute("UPDATE omni_assignments SET state = ? WHERE reservation_id = ?",
                           ("timeout" if reason == "timeout" else "cancelling", rid))
        self._deadlines.pop(rid, None)

    def _timer(self, tx: Tx, expired: list[str], *, rebroker: bool) -> None:
        conn = self._db()
        now = self.wall()
        ts = now_ts()
        for rid in expired:
            rows = conn.execute("SELECT order_id, store, state FROM omni_assignments WHERE "
                                "reservation_id = ?", (rid,))
            self._deadlines.pop(rid, None)
            if not rows or rows[0][2] != "assigned":
                continue
            order_id, store, _ = rows[0]
            self._cancel_part(tx, order_id, rid, store, "timeout")
            add_history(conn, order_id, ts, event="timeout", store=store,
                    detail={"reservation_id": rid})
            self._broker(tx, order_id, now, ts)
        if rebroker:
            for order_id in list(self.state.queued_orders)[:REBROKER_BATCH]:
                self._broker(tx, order_id, now, ts)

    # ------------------------------------------------------------------ brokering
    def _db(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("OmniEngine.attach() was not called")
        return self._conn

    def _destination(self, request: dict[str, Any]) -> tuple[float, float] | None:
        ship = request.get("ship_to") or {}
        if ship.get("lat") is not None and ship.get("lon") is not None:
            return (float(ship["lat"]), float(ship["lon"]))
        postcode = ship.get("postcode")
        return self.settings.postcodes.get(postcode) if isinstance(postcode, str) else None

    def _set_queued(self, order_id: str, lines: dict[str, int] | None) -> None:
        self.state.set_queued(order_id, lines)
        self._skus.update(lines or ())

    def _broker(self, tx: Tx, order_id: str, now: float, ts: str) -> None:
        conn = self._db()
        if conn.dialect == "postgres":  # several workers: one brokers an order at a time
            conn.execute("SELECT 1 FROM omni_orders WHERE order_id = ? FOR UPDATE",
                         (order_id,))
        row = order_row(conn, order_id)
        if row is None or row["state"] in _FINAL:
            return
        request = row["request"]
        parts = assignments(conn, order_id)
        open_by_line: dict[int, tuple[str, int]] = {}
        for line in request["lines"]:
            covered = sum(ln["qty"] for a in parts if a["state"] in ACTIVE
                          for ln in a["lines"] if ln["line_no"] == line["line_no"])
            if line["qty"] > covered:
                open_by_line[line["line_no"]] = (line["sku"], line["qty"] - covered)
        wanted: dict[str, int] = {}
        for sku, qty in open_by_line.values():
            wanted[sku] = wanted.get(sku, 0) + qty
        if not wanted:
            self._update_state(order_id, ts)
            return
        tried = {a["store"] for a in parts if a["state"] not in ACTIVE}
        pickup = request.get("pickup_store") if request["fulfilment"] == "pickup" else None
        plan = broker(Request(wanted, self._destination(request), pickup,
                              bool(request.get("may_split"))),
                      self._candidates(tx, wanted, tried, now), self.settings.rules)
        if plan is None:
            if row["state"] != "queued":
                add_history(conn, order_id, ts, event="queued", store=None,
                    detail={"open": wanted})
            self._set_queued(order_id, wanted)
            self._update_state(order_id, ts, queued=True)
            return
        self._set_queued(order_id, None)
        attempts = row["attempts"]
        for store, take in plan:
            attempts += 1
            lines = _assign_lines(open_by_line, take)
            rid = f"ord-{order_id}-{attempts}"
            accept_by = now + self.settings.accept_within
            data: dict[str, Any] = {
                "order_id": order_id, "reservation_id": rid, "channel": request["channel"],
                "fulfilment": request["fulfilment"], "lines": lines, "accept_by": iso(accept_by)}
            for key in ("customer_ref", "ship_to", "pickup_code_hash"):
                if request.get(key) is not None:
                    data[key] = request[key]
            tx.issue(store, [{"type": "order.assign", "data": data}])
            conn.execute("INSERT INTO omni_assignments (reservation_id, order_id, store, lines,"
                         " state, accept_by, created) VALUES (?, ?, ?, ?, 'assigned', ?, ?)",
                         (rid, order_id, store, orjson.dumps(lines).decode(), accept_by, ts))
            add_history(conn, order_id, ts, event="brokered", store=store,
                    detail={"reservation_id": rid, "lines": lines})
            self._deadlines[rid] = (accept_by, order_id, store)
            self._count_order(store, now)
        conn.execute("UPDATE omni_orders SET attempts = ? WHERE order_id = ?",
                     (attempts, order_id))
        self._update_state(order_id, ts)

    def _candidates(self, tx: Tx, wanted: dict[str, int], tried: set[str],
                    now: float) -> list[Candidate]:
        """Every store that could send some of the order, with its ATP of each SKU."""
        stock = {sku: tx.sku_stock(sku) for sku in wanted}
        categories = {sku: self._category(sku) for sku in wanted}
        state = self.state
        cells: dict[str, dict[str, int]] = {}
        facts: dict[str, StoreFacts] = {}
        with state.lock:
            for sku, per_store in stock.items():
                for store, cell in per_store.items():
                    if cell[0] - cell[1] <= 0 or store in tried or not self.owns(store):
                        continue  # nothing free there whatever the rest of the formula
                    f = facts.get(store)
                    if f is None:
                        f = facts[store] = state.store_facts(store, now)
                    atp = state.cell_atp(f, sku, cell, now, categories[sku]).atp
                    if atp > 0:
                        cells.setdefault(store, {})[sku] = atp
            out = []
            for store, atp_map in cells.items():
                attrs = state.attrs.get(store)
                cap = None if attrs is None else attrs.capacity_per_day
                left = None if cap is None else cap - state.orders_today(store, now)
                out.append(Candidate(store, atp_map, None if attrs is None else attrs.location,
                                     left))
        return out

    def _category(self, sku: str) -> str | None:
        if not self.settings.safety.by_category:
            return None
        for (item,) in self._db().execute("SELECT item FROM catalog WHERE sku = ? LIMIT 1",
                                          (sku,)):
            category = orjson.loads(item).get("category")
            return category if isinstance(category, str) else None
        return None

    def _count_order(self, store: str, now: float) -> None:
        day = utc_day(now)
        with self.state.lock:
            n = self.state.orders_today(store, now) + 1
            self.state.day_orders[store] = (day, n)
            self.state.contact.setdefault(store, now)
            contact = self.state.contact[store]
        self._db().execute(
            "INSERT INTO omni_contact (store, last_contact, day, day_orders) VALUES "
            "(?, ?, ?, ?) ON CONFLICT (store) DO UPDATE SET day = excluded.day, "
            "day_orders = excluded.day_orders", (store, contact, day, n))
        self._stores.add(store)

    def _update_state(self, order_id: str, ts: str, *, queued: bool = False) -> None:
        conn = self._db()
        row = order_row(conn, order_id)
        if row is None or row["state"] in _FINAL:
            return
        parts = [a for a in assignments(conn, order_id) if a["state"] in ACTIVE]
        if queued or not parts:
            state = "queued"
        elif all(a["state"] == "fulfilled" for a in parts):
            state = "collected" if row["request"]["fulfilment"] == "pickup" else "shipped"
        else:
            state = _ORDER_STAGE[min(STAGES[a["state"]] for a in parts
                                     if a["state"] != "fulfilled")]
        if state != row["state"]:
            conn.execute("UPDATE omni_orders SET state = ?, updated = ? WHERE order_id = ?",
                         (state, ts, order_id))


def _assign_lines(open_by_line: dict[int, tuple[str, int]], take: dict[str, int]
                  ) -> list[dict[str, Any]]:
    """Spread a store's share ``{sku: qty}`` over the order's open lines, in line order."""
    left = dict(take)
    lines = []
    for line_no in sorted(open_by_line):
        sku, qty = open_by_line[line_no]
        n = min(qty, left.get(sku, 0))
        if n > 0:
            lines.append({"line_no": line_no, "sku": sku, "qty": n})
            left[sku] -= n
            open_by_line[line_no] = (sku, qty - n)
    return lines
