"""The transaction handle an op gets (:class:`Tx`) and the group state it buffers into.

Appending an event is the hot path, so events and stock deltas are buffered in memory
and written with ``executemany`` at the end of the group (:func:`flush_group`). Any op
that runs its own SQL first flushes the buffers, so its reads always see every earlier
write. The writer thread (:mod:`edge_agent.ledger.writer`) drives the op lifecycle.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Final

from edge_agent.errors import FactRejected
from edge_agent.ledger.records import AppendedEvent, event_key
from sync.errors import WireFormatError
from sync.wire import MAX_ITEM_BYTES, MAX_SAFE_INT, SKU_RE, encode_fact, new_uuid, now_ts

_EVENT_INSERT = (
    "INSERT INTO events (id, epoch_ordinal, seq, event_id, type, ts, payload) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_STOCK_UPSERT = (
    "INSERT INTO stock (sku, on_hand, reserved) VALUES (?, ?, ?) "
    "ON CONFLICT (sku) DO UPDATE SET on_hand = on_hand + excluded.on_hand, "
    "reserved = reserved + excluded.reserved"
)


# SQL naming one of these may read what Tx.append buffers (a false match only flushes early).
_BUFFERED_TABLES_RE: Final = re.compile(r"\b(?:events|stock|epochs)\b", re.IGNORECASE)


class Head:
    """The current epoch (ordinal, id) and its last seq; owned by the writer thread."""

    __slots__ = ("epoch", "last_seq", "ordinal")

    def __init__(self, ordinal: int, epoch: str, last_seq: int) -> None:
        self.ordinal = ordinal
        self.epoch = epoch
        self.last_seq = last_seq

    def state(self) -> tuple[int, str, int]:
        return self.ordinal, self.epoch, self.last_seq

    def restore(self, state: tuple[int, str, int]) -> None:
        self.ordinal, self.epoch, self.last_seq = state


def _check_deltas(deltas: Iterable[tuple[str, int]], what: str) -> list[tuple[str, int]]:
    out = list(deltas)
    for sku, delta in out:
        if not isinstance(sku, str) or SKU_RE.fullmatch(sku) is None:
            raise FactRejected(f"{what}: {sku!r} is not a valid SKU")
        if type(delta) is not int or not -MAX_SAFE_INT <= delta <= MAX_SAFE_INT:
            raise FactRejected(f"{what}[{sku}]: delta {delta!r} is not a safe integer")
    return out


class Group:
    """State shared by the ops of one transaction, flushed before COMMIT."""

    __slots__ = ("appended", "events", "stock", "touched_epochs")

    def __init__(self) -> None:
        self.appended = False
        self.events: list[tuple[int, int, int, str, str, str, bytes]] = []
        self.stock: dict[str, list[int]] = {}
        self.touched_epochs: dict[int, int] = {}


class Tx:
    """The handle an op gets. Valid only while the op runs on the writer thread."""

    def __init__(self, head: Head, group: Group, conn: sqlite3.Connection) -> None:
        self._head = head
        self._group = group
        self.conn = conn
        self._events: list[tuple[int, int, int, str, str, str, bytes]] = []
        self._stock: dict[str, list[int]] = {}
        self._touched: dict[int, int] = {}
        self._savepoint = False
        self._appended = False
        self._saved_epoch = (head.ordinal, head.epoch, head.last_seq)

    # -- facts ---------------------------------------------------------------------------
    @property
    def epoch(self) -> str:
        return self._head.epoch

    def append(
        self,
        type: str,  # noqa: A002 - the protocol calls it "type"
        data: dict[str, Any],
        *,
        stock: Iterable[tuple[str, int]] = (),
        reserve: Iterable[tuple[str, int]] = (),
        event_id: str | None = None,
        ts: str | None = None,
    ) -> AppendedEvent:
        """Record one fact: the next gapless seq, its event, its stock and reserve deltas."""
        head = self._head
        stock_list = _check_deltas(stock, "stock")
        reserve_list = _check_deltas(reserve, "reserve")
        if not isinstance(type, str) or not type or len(type) > 64:
            raise FactRejected(f"event type {type!r} must be a short string")
        if not isinstance(data, dict):
            raise FactRejected("event data must be an object")
        seq = head.last_seq + 1
        event_id = event_id or new_uuid()
        ts = ts or now_ts()
        event: dict[str, Any] = {"seq": seq, "id": event_id, "type": type, "ts": ts, "data": data}
        if stock_list:
            event["stock"] = [{"sku": sku, "delta": delta} for sku, delta in stock_list]
        if reserve_list:
            event["reserve"] = [{"sku": sku, "delta": delta} for sku, delta in reserve_list]
        try:
            payload = encode_fact(event)
        except WireFormatError as exc:
            raise FactRejected(str(exc)) from exc
        if len(payload) > MAX_ITEM_BYTES:
            raise FactRejected(
                f"the {type} fact is {len(payload)} bytes; the protocol limit for one event is "
                f"{MAX_ITEM_BYTES} (split it into several facts)"
            )
        ordinal = head.ordinal
        head.last_seq = seq
        self._events.append((event_key(ordinal, seq), ordinal, seq, event_id, type, ts, payload))
        self._touched[ordinal] = seq
        self._appended = True
        self._add(stock_list, 0)
        self._add(reserve_list, 1)
        return AppendedEvent(head.epoch, seq, event_id, ts)

    def apply_deltas(
        self, *, stock: Iterable[tuple[str, int]] = (), reserve: Iterable[tuple[str, int]] = ()
    ) -> None:
        """Change the projection without an event (central commands, resync)."""
        self._add(_check_deltas(stock, "stock"), 0)
        self._add(_check_deltas(reserve, "reserve"), 1)

    def _add(self, deltas: list[tuple[str, int]], column: int) -> None:
        pending = self._stock
        for sku, delta in deltas:
            entry = pending.get(sku)
            if entry is None:
                entry = pending[sku] = [0, 0]
            entry[column] += delta

    def _pending(self, sku: str, column: int) -> int:
        total = 0
        for pending in (self._group.stock, self._stock):
            entry = pending.get(sku)
            if entry is not None:
                total += entry[column]
        return total

    def on_hand(self, sku: str) -> int:
        row = self.conn.execute("SELECT on_hand FROM stock WHERE sku = ?", (sku,)).fetchone()
        return (int(row[0]) if row else 0) + self._pending(sku, 0)

    def reserved(self, sku: str) -> int:
        row = self.conn.execute("SELECT reserved FROM stock WHERE sku = ?", (sku,)).fetchone()
        return (int(row[0]) if row else 0) + self._pending(sku, 1)

    # -- raw SQL -------------------------------------------------------------------------
    def _prepare_sql(self, sql: str, *, write: bool) -> None:
        """Make ``sql`` safe to run inside the group.

        Appended events and stock deltas are buffered; only SQL that names a buffered
        table needs them flushed first, so a sale's idempotency and catalog reads keep
        the group's inserts batched. Writes get this op's savepoint (once), so a failing
        op is rolled back alone.
        """
        sees_buffers = _BUFFERED_TABLES_RE.search(sql) is not None
        if sees_buffers and (self._group.events or self._group.stock):
            flush_group(self.conn, self._group)
        local_pending = bool(self._events or self._stock)
        if not self._savepoint and (write or (sees_buffers and local_pending)):
            self.conn.execute("SAVEPOINT op")
            self._savepoint = True
        if sees_buffers and local_pending:
            local = Group()
            # The epochs' last_seq must follow these events now, inside the savepoint, so
            # that a rollback of this op undoes both together.
            local.events, local.stock = self._events, self._stock
            local.touched_epochs = dict(self._touched)
            flush_group(self.conn, local)
            self._events, self._stock = [], {}

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        self._prepare_sql(sql, write=True)
        return self.conn.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        self._prepare_sql(sql, write=True)
        return self.conn.executemany(sql, rows)

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """A read inside the transaction; it sees every write of the group so far."""
        self._prepare_sql(sql, write=False)
        return list(self.conn.execute(sql, tuple(params)).fetchall())

    # -- meta, epochs, watermarks --------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def applied_cseq(self) -> int:
        return int(self.get_meta("applied_cseq") or 0)

    def set_applied_cseq(self, cseq: int) -> None:
        self.set_meta("applied_cseq", str(cseq))

    def new_epoch(self, reason: str) -> str:
        """Every fact appended after this (in this transaction on) gets a new epoch."""
        head = self._head
        epoch = str(uuid.uuid4())
        ordinal = head.ordinal + 1
        self.execute(
            "INSERT INTO epochs (ordinal, epoch, created_at, reason) VALUES (?, ?, ?, ?)",
            (ordinal, epoch, now_ts(), reason),
        )
        head.restore((ordinal, epoch, 0))
        return epoch

    def set_acked(self, epoch: str, through_seq: int) -> None:
        self.execute(
            "UPDATE epochs SET acked_seq = max(acked_seq, ?) WHERE epoch = ?",
            (through_seq, epoch),
        )

    def replace_stock(self, rows: Iterable[tuple[str, int, int]]) -> None:
        self.execute("DELETE FROM stock")
        self.executemany(
            "INSERT INTO stock (sku, on_hand, reserved) VALUES (?, ?, ?)",
            [row for row in rows if row[1] != 0 or row[2] != 0],
        )

    # -- op lifecycle (writer thread) ----------------------------------------------------
    def finish(self) -> None:
        """The op returned: release its savepoint, hand its buffers to the group (writer only)."""
        if self._savepoint:
            self.conn.execute("RELEASE op")
        group = self._group
        group.events.extend(self._events)
        for sku, (d_stock, d_reserve) in self._stock.items():
            entry = group.stock.get(sku)
            if entry is None:
                group.stock[sku] = [d_stock, d_reserve]
            else:
                entry[0] += d_stock
                entry[1] += d_reserve
        group.touched_epochs.update(self._touched)
        group.appended = group.appended or self._appended

    def abort(self) -> None:
        """The op raised: undo its SQL and its seqs (writer only)."""
        if self._savepoint:
            self.conn.execute("ROLLBACK TO op")
            self.conn.execute("RELEASE op")
        self._head.restore(self._saved_epoch)


def flush_group(conn: sqlite3.Connection, group: Group) -> None:
    """Write what the group buffered: its events, the epochs' last seq, the stock deltas."""
    if group.events:
        conn.executemany(_EVENT_INSERT, group.events)
        for ordinal, seq in group.touched_epochs.items():
            conn.execute("UPDATE epochs SET last_seq = ? WHERE ordinal = ?", (seq, ordinal))
        group.touched_epochs = {}
        group.events = []
    if group.stock:
        conn.executemany(
            _STOCK_UPSERT, [(sku, d[0], d[1]) for sku, d in group.stock.items() if d != [0, 0]]
        )
        group.stock = {}
