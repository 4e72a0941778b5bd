"""The ledger: one writer thread, group commit, gapless seq, stock projection.

Every write is an *op*, a function of a :class:`Tx`, queued to the single writer thread.
The writer takes every op waiting, runs them in ONE ``BEGIN IMMEDIATE`` transaction and
commits with ``synchronous=FULL``; only then are the callers answered. An op that raises
is rolled back alone (a savepoint when it touched SQL, nothing to undo otherwise) and its
exception goes to its caller; the others commit.

Appending an event is the hot path, so events and stock deltas are buffered in memory
and written with ``executemany`` at the end of the group. Any op that runs its own SQL
first flushes the buffers, so its reads always see every earlier write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import os
import queue
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import structlog

from edge_agent.errors import (
    DatabaseLocked,
    DiskFull,
    FactRejected,
    LedgerClosed,
    LedgerError,
)
from edge_agent.ledger import schema
from edge_agent.memory import trim_heap
from sync.errors import WireFormatError
from sync.files import FILE_MODE, private_database, private_dir, tighten
from sync.store_port import DigestFigures, EpochMark
from sync.wire import (
    MAX_ITEM_BYTES,
    MAX_SAFE_INT,
    SKU_RE,
    digest_lines,
    encode_fact,
    new_uuid,
    now_ts,
)

T = TypeVar("T")
log = structlog.get_logger("edge_agent.ledger")

SEQ_BITS: Final = 40
SEQ_MASK: Final = (1 << SEQ_BITS) - 1
GROUP_MAX: Final = 2000
_STOP: Final = object()

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


def event_key(ordinal: int, seq: int) -> int:
    return (ordinal << SEQ_BITS) | seq


@dataclass(frozen=True, slots=True)
class AppendedEvent:
    epoch: str
    seq: int
    id: str
    ts: str


@dataclass(frozen=True, slots=True)
class EpochInfo(EpochMark):
    """The sync port's :class:`~sync.store_port.EpochMark` plus the ledger's own columns."""

    ordinal: int
    created_at: str


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class LedgerStats:
    outbox_pending: int
    outbox_oldest_ts: str | None
    db_bytes: int
    wal_bytes: int
    last_seq: int
    applied_cseq: int
    epoch: str


def _check_deltas(deltas: Iterable[tuple[str, int]], what: str) -> list[tuple[str, int]]:
    out = list(deltas)
    for sku, delta in out:
        if not isinstance(sku, str) or SKU_RE.fullmatch(sku) is None:
            raise FactRejected(f"{what}: {sku!r} is not a valid SKU")
        if type(delta) is not int or not -MAX_SAFE_INT <= delta <= MAX_SAFE_INT:
            raise FactRejected(f"{what}[{sku}]: delta {delta!r} is not a safe integer")
    return out


class _Group:
    """State shared by the ops of one transaction, flushed before COMMIT."""

    __slots__ = ("appended", "events", "stock", "touched_epochs")

    def __init__(self) -> None:
        self.appended = False
        self.events: list[tuple[int, int, int, str, str, str, bytes]] = []
        self.stock: dict[str, list[int]] = {}
        self.touched_epochs: dict[int, int] = {}


class Tx:
    """The handle an op gets. Valid only while the op runs on the writer thread."""

    def __init__(self, ledger: Ledger, group: _Group, conn: sqlite3.Connection) -> None:
        self._ledger = ledger
        self._group = group
        self.conn = conn
        self._events: list[tuple[int, int, int, str, str, str, bytes]] = []
        self._stock: dict[str, list[int]] = {}
        self._touched: dict[int, int] = {}
        self._savepoint = False
        self._appended = False
        self._saved_epoch = (ledger._epoch_ordinal, ledger._epoch, ledger._last_seq)

    # -- facts ---------------------------------------------------------------------------
    @property
    def epoch(self) -> str:
        return self._ledger._epoch

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
        ledger = self._ledger
        stock_list = _check_deltas(stock, "stock")
        reserve_list = _check_deltas(reserve, "reserve")
        if not isinstance(type, str) or not type or len(type) > 64:
            raise FactRejected(f"event type {type!r} must be a short string")
        if not isinstance(data, dict):
            raise FactRejected("event data must be an object")
        seq = ledger._last_seq + 1
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
        ordinal = ledger._epoch_ordinal
        ledger._last_seq = seq
        self._events.append((event_key(ordinal, seq), ordinal, seq, event_id, type, ts, payload))
        self._touched[ordinal] = seq
        self._appended = True
        self._add(stock_list, 0)
        self._add(reserve_list, 1)
        return AppendedEvent(ledger._epoch, seq, event_id, ts)

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
            self._ledger._flush(self._group)
        local_pending = bool(self._events or self._stock)
        if not self._savepoint and (write or (sees_buffers and local_pending)):
            self.conn.execute("SAVEPOINT op")
            self._savepoint = True
        if sees_buffers and local_pending:
            local = _Group()
            # The epochs' last_seq must follow these events now, inside the savepoint, so
            # that a rollback of this op undoes both together.
            local.events, local.stock = self._events, self._stock
            local.touched_epochs = dict(self._touched)
            self._ledger._flush(local)
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
        ledger = self._ledger
        epoch = str(uuid.uuid4())
        ordinal = ledger._epoch_ordinal + 1
        self.execute(
            "INSERT INTO epochs (ordinal, epoch, created_at, reason) VALUES (?, ?, ?, ?)",
            (ordinal, epoch, now_ts(), reason),
        )
        ledger._epoch_ordinal, ledger._epoch, ledger._last_seq = ordinal, epoch, 0
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
    def _finish(self) -> None:
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

    def _abort(self) -> None:
        ledger = self._ledger
        if self._savepoint:
            self.conn.execute("ROLLBACK TO op")
            self.conn.execute("RELEASE op")
        ledger._epoch_ordinal, ledger._epoch, ledger._last_seq = self._saved_epoch


@dataclass(slots=True)
class _Request:
    op: Callable[[Tx], Any]
    # A blocking caller waits on a concurrent future; an async caller on an asyncio future
    # of its loop, resolved in one call_soon_threadsafe per group (one wake-up, not one per op).
    future: concurrent.futures.Future[Any] | None
    waiter: asyncio.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None


def _resolve_waiters(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for waiter, ok, value in outcomes:
        if waiter.done():  # the caller was cancelled; the write happened regardless
            continue
        if ok:
            waiter.set_result(value)
        else:
            waiter.set_exception(value)


class Ledger:
    """The store's durable ledger. Open with :meth:`open`; one per database file."""

    def __init__(
        self, path: Path, store_id: str, conn: sqlite3.Connection, lock_fd: int, *, is_new: bool
    ) -> None:
        self.path = path
        self.store_id = store_id
        self.is_new = is_new
        self._conn = conn
        self._lock_fd = lock_fd
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._closed = False
        self._listeners: list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = []
        self._reader_local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self.memory_releases = 0  # times release_memory() gave caches back
        self._readers_lock = threading.Lock()
        self._read_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="ledger-read"
        )
        self._epoch_ordinal, self._epoch, self._last_seq = self._load_epoch()
        self._thread = threading.Thread(target=self._writer_loop, name="ledger-writer", daemon=True)
        self._thread.start()

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, store_id: str) -> Ledger:
        path = Path(path)
        private_dir(path.parent)
        # Read before locking: acquire_lock overwrites the mark with our pid. A second
        # agent racing us fails to lock anyway.
        stopped_cleanly = clean_stop_matches(path)
        lock_fd = acquire_lock(path)
        try:
            private_database(path)  # 0640 before SQLite creates it (and its -wal, -shm)
            conn = schema.connect(path)
            try:
                # The full check reads every page (seconds on a large ledger); it is only
                # needed when the last stop was not clean or the file changed since.
                if not stopped_cleanly:
                    schema.quick_check(conn, path)
                schema.migrate(conn, path)
                is_new = schema.ensure_identity(conn, path, store_id)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, store_id, conn, lock_fd, is_new=is_new)

    def _load_epoch(self) -> tuple[int, str, int]:
        row = self._conn.execute(
            "SELECT ordinal, epoch FROM epochs ORDER BY ordinal DESC LIMIT 1"
        ).fetchone()
        ordinal, epoch = int(row[0]), str(row[1])
        # The events table is the truth for seq; epochs.last_seq is a cache of it.
        top = self._conn.execute(
            "SELECT max(id) FROM events WHERE id BETWEEN ? AND ?",
            (event_key(ordinal, 0), event_key(ordinal, SEQ_MASK)),
        ).fetchone()[0]
        last_seq = int(top) & SEQ_MASK if top is not None else 0
        return ordinal, epoch, last_seq

    @property
    def current_epoch(self) -> str:
        return self._epoch

    # -- writing -------------------------------------------------------------------------
    def submit(self, op: Callable[[Tx], T]) -> concurrent.futures.Future[T]:
        if self._closed:
            raise LedgerClosed("the ledger is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Request(op, future))
        return future

    async def write(self, op: Callable[[Tx], T]) -> T:
        """Run ``op`` in the next group; return its result once the group is durable.

        Cancelling the caller does not cancel the write: it may still commit (the writer
        skips a cancelled waiter when it answers).
        """
        if self._closed:
            raise LedgerClosed("the ledger is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Request(op, None, waiter, loop))
        return await waiter

    def write_blocking(self, op: Callable[[Tx], T]) -> T:
        return self.submit(op).result()

    def add_commit_listener(self, callback: Callable[[], None]) -> None:
        """``callback()`` runs on the current event loop after each commit with new events."""
        self._listeners.append((asyncio.get_running_loop(), callback))

    def remove_commit_listener(self, callback: Callable[[], None]) -> None:
        self._listeners = [(lp, cb) for lp, cb in self._listeners if cb is not callback]

    def _writer_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Request] = [first]  # type: ignore[list-item]  # _STOP handled above
            stop = False
            while len(batch) < GROUP_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]  # only _Request besides _STOP
            self._run_group(batch)
            if stop:
                break
        self._conn.close()

    def _run_group(self, batch: list[_Request]) -> None:
        conn = self._conn
        group = _Group()
        outcomes: list[tuple[_Request, bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            error = _map_sqlite_error(exc, self.path)
            self._resolve([(request, False, error) for request in batch])
            return
        for request in batch:
            if request.future is not None and not request.future.set_running_or_notify_cancel():
                continue
            tx = Tx(self, group, conn)
            try:
                result = request.op(tx)
                tx._finish()
            except Exception as raised:  # noqa: BLE001 - the op's own error goes to its caller
                failure: BaseException = (
                    _map_sqlite_error(raised, self.path)
                    if isinstance(raised, sqlite3.Error)
                    else raised
                )
                try:
                    tx._abort()
                except sqlite3.Error as abort_exc:
                    outcomes.append((request, False, failure))
                    self._fail_group(outcomes, abort_exc)
                    return
                outcomes.append((request, False, failure))
                continue
            outcomes.append((request, True, result))
        try:
            self._flush(group)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._fail_group(outcomes, exc)
            return
        self._resolve(outcomes)
        if group.appended:
            self._notify()

    def _resolve(self, outcomes: list[tuple[_Request, bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for request, ok, value in outcomes:
            if request.future is not None:
                if ok:
                    request.future.set_result(value)
                else:
                    request.future.set_exception(value)
            elif request.waiter is not None and request.loop is not None:
                by_loop.setdefault(request.loop, []).append((request.waiter, ok, value))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone
                loop.call_soon_threadsafe(_resolve_waiters, items)

    def _fail_group(self, outcomes: list[tuple[_Request, bool, Any]], exc: sqlite3.Error) -> None:
        """The transaction itself failed: nothing of it is durable, every caller learns so."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("ROLLBACK")
        self._epoch_ordinal, self._epoch, self._last_seq = self._load_epoch()
        error = _map_sqlite_error(exc, self.path)
        log.error("ledger transaction failed", error=str(error), ops=len(outcomes))
        self._resolve([(request, False, error if ok else value) for request, ok, value in outcomes])

    def _flush(self, group: _Group) -> None:
        conn = self._conn
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

    def _notify(self) -> None:
        for loop, callback in self._listeners:
            with contextlib.suppress(RuntimeError):  # that loop is already closed
                loop.call_soon_threadsafe(callback)

    # -- reading -------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = schema.connect(self.path, readonly=True)
            self._reader_local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _read_in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise _map_sqlite_error(exc, self.path) from exc
        finally:
            conn.execute("COMMIT")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise LedgerClosed("the ledger is closed")
        return await asyncio.wrap_future(self._read_pool.submit(self._read_in_thread, fn))

    def read_blocking(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise LedgerClosed("the ledger is closed")
        return self._read_pool.submit(self._read_in_thread, fn).result()

    async def release_memory(self) -> None:
        """Give back what a burst of reads or writes left cached (a drained backlog, a
        resync): SQLite keeps up to ``cache_size`` of pages per connection (2 MiB by
        default; a writer and up to two readers), glibc the pages Python freed."""
        if self._closed:
            return

        def shrink(tx: Tx) -> None:
            tx.conn.execute("PRAGMA shrink_memory")

        await self.write(shrink)

        def readers() -> None:
            # sqlite3.threadsafety is 3 (serialized): a connection may be used from any
            # thread; shrink_memory frees only pages no statement holds
            with self._readers_lock:
                for conn in self._readers:
                    conn.execute("PRAGMA shrink_memory")
            trim_heap()

        await asyncio.to_thread(readers)
        self.memory_releases += 1

    # -- outbox and sync -----------------------------------------------------------------
    async def epochs(self) -> list[EpochInfo]:
        return await self.read(read_epochs)

    async def events_after(
        self, epoch: str, after_seq: int, *, max_events: int, max_bytes: int
    ) -> list[StoredEvent]:
        return await self.read(
            lambda conn: read_events_after(conn, epoch, after_seq, max_events, max_bytes)
        )

    async def event_range(
        self, epoch: str, after_seq: int, *, max_events: int, max_bytes: int
    ) -> tuple[int, int, bytes] | None:
        return await self.read(
            lambda conn: read_event_range(conn, epoch, after_seq, max_events, max_bytes)
        )

    async def mark_acked(self, epoch: str, through_seq: int) -> None:
        await self.write(lambda tx: tx.set_acked(epoch, through_seq))

    async def prune_acked(self, older_than_ts: str) -> int:
        def prune(tx: Tx) -> int:
            total = 0
            for row in tx.query("SELECT ordinal, acked_seq FROM epochs"):
                cursor = tx.execute(
                    "DELETE FROM events WHERE id BETWEEN ? AND ? AND ts < ?",
                    (event_key(row[0], 1), event_key(row[0], row[1]), older_than_ts),
                )
                total += cursor.rowcount
            return total

        return await self.write(prune)

    async def digest_state(self) -> DigestFigures:
        return await self.read(read_digest_state)

    async def stats(self) -> LedgerStats:
        return await self.read(lambda conn: read_stats(conn, self.path))

    # -- closing -------------------------------------------------------------------------
    def close(self) -> None:
        """Finish every queued write, then close. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        self._read_pool.shutdown(wait=True)
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        write_clean_stop(self.path, self._lock_fd)
        os.close(self._lock_fd)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- read functions (usable on any connection, also by the CLI without a daemon) ---------
def read_epochs(conn: sqlite3.Connection) -> list[EpochInfo]:
    return [
        EpochInfo(
            epoch=str(r["epoch"]),
            ordinal=int(r["ordinal"]),
            last_seq=int(r["last_seq"]),
            acked_seq=int(r["acked_seq"]),
            created_at=str(r["created_at"]),
        )
        for r in conn.execute(
            "SELECT epoch, ordinal, last_seq, acked_seq, created_at FROM epochs ORDER BY ordinal"
        )
    ]


def _ordinal(conn: sqlite3.Connection, epoch: str) -> int:
    row = conn.execute("SELECT ordinal FROM epochs WHERE epoch = ?", (epoch,)).fetchone()
    if row is None:
        raise LedgerError(f"unknown epoch {epoch!r}")
    return int(row[0])


def read_events_after(
    conn: sqlite3.Connection, epoch: str, after_seq: int, max_events: int, max_bytes: int
) -> list[StoredEvent]:
    ordinal = _ordinal(conn, epoch)
    out: list[StoredEvent] = []
    size = 0
    for seq, payload in conn.execute(
        "SELECT seq, payload FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
        (event_key(ordinal, after_seq), event_key(ordinal, SEQ_MASK), max_events),
    ):
        size += len(payload) + 1
        if out and size > max_bytes:
            break
        out.append(StoredEvent(int(seq), bytes(payload)))
    return out


def read_event_range(
    conn: sqlite3.Connection, epoch: str, after_seq: int, max_events: int, max_bytes: int
) -> tuple[int, int, bytes] | None:
    """(first seq, last seq, payloads joined with commas) of the events of ``epoch`` after
    ``after_seq``: at most ``max_events`` and, beyond the first, ``max_bytes`` with the commas.
    The outbox's read, one C-level join instead of an object per event; it stops before a
    gap in seq (there is none in a sound ledger, and central drops non-contiguous batches)."""
    ordinal = _ordinal(conn, epoch)
    rows = conn.execute(
        "SELECT seq, payload FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
        (event_key(ordinal, after_seq), event_key(ordinal, SEQ_MASK), max_events),
    ).fetchall()
    if not rows:
        return None
    seqs, payloads = zip(*rows, strict=True)
    count = len(payloads)
    if sum(map(len, payloads)) + count - 1 > max_bytes:
        size, count = -1, 0
        for payload in payloads:
            size += len(payload) + 1
            if count and size > max_bytes:
                break
            count += 1
    first = int(seqs[0])
    if int(seqs[count - 1]) - first != count - 1:
        count = next(i for i in range(1, count) if seqs[i] != first + i)
    return first, first + count - 1, b",".join(payloads[:count])


def read_digest_state(conn: sqlite3.Connection) -> DigestFigures:
    epoch_row = conn.execute(
        "SELECT epoch, last_seq FROM epochs ORDER BY ordinal DESC LIMIT 1"
    ).fetchone()
    cseq = conn.execute("SELECT value FROM meta WHERE key = 'applied_cseq'").fetchone()
    skus, sha = digest_lines(
        (str(r[0]), int(r[1]), int(r[2]))
        for r in conn.execute("SELECT sku, on_hand, reserved FROM stock")
    )
    return DigestFigures(str(epoch_row[0]), int(epoch_row[1]), int(cseq[0]) if cseq else 0, skus,
                         sha)


def read_stats(conn: sqlite3.Connection, path: Path) -> LedgerStats:
    pending = 0
    oldest: str | None = None
    for info in read_epochs(conn):
        if info.last_seq > info.acked_seq:
            pending += info.last_seq - info.acked_seq
            if oldest is None:
                row = conn.execute(
                    "SELECT ts FROM events WHERE id > ? ORDER BY id LIMIT 1",
                    (event_key(info.ordinal, info.acked_seq),),
                ).fetchone()
                oldest = str(row[0]) if row else None
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    page_count = int(conn.execute("PRAGMA page_count").fetchone()[0])
    wal = Path(f"{path}-wal")
    top = conn.execute(
        "SELECT epoch, last_seq FROM epochs ORDER BY ordinal DESC LIMIT 1"
    ).fetchone()
    cseq = conn.execute("SELECT value FROM meta WHERE key = 'applied_cseq'").fetchone()
    return LedgerStats(
        outbox_pending=pending,
        outbox_oldest_ts=oldest,
        db_bytes=page_size * page_count,
        wal_bytes=wal.stat().st_size if wal.exists() else 0,
        last_seq=int(top[1]),
        applied_cseq=int(cseq[0]) if cseq else 0,
        epoch=str(top[0]),
    )


# -- helpers -----------------------------------------------------------------------------
def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def acquire_lock(path: Path) -> int:
    """Hold an exclusive flock beside the database for the life of the process.

    A second agent on the same file would fight the first for the store's MQTT client id
    and interleave seqs; refuse it with the holder's pid.
    """
    lock = lock_path(path)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
    tighten(lock)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DatabaseLocked(
                f"{path} is in use by another edge-agent (pid {holder}); stop it first "
                "(systemctl stop edge-agent)"
            ) from exc
        raise LedgerError(f"cannot lock {lock}: {exc}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _file_mark(path: Path) -> str | None:
    """The database file's identity as a clean stop leaves it, or None if a WAL remains."""
    try:
        st = path.stat()
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            return None
    except OSError:
        return None
    return f"clean size={st.st_size} mtime_ns={st.st_mtime_ns} ino={st.st_ino}"


def write_clean_stop(path: Path, lock_fd: int) -> None:
    """Leave a clean-stop mark in the lock file: the file's size, mtime and inode.

    Written after the last connection closed (SQLite has then checkpointed and removed the
    WAL). The next open skips the full ``quick_check`` only if the file still matches.
    """
    mark = _file_mark(path)
    if mark is None:
        return
    try:
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{mark}\n".encode(), 0)
        os.fsync(lock_fd)
    except OSError:
        return  # no mark: the next start runs the full check, which is only slower


def clean_stop_matches(path: Path) -> bool:
    """True when the last holder stopped cleanly and the file is as it left it."""
    try:
        text = lock_path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return False
    current = _file_mark(path)
    return current is not None and text == current


def is_locked(path: Path) -> bool:
    """True when a live process holds the database (the daemon is running)."""
    lock = lock_path(path)
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _map_sqlite_error(exc: sqlite3.Error, path: Path) -> LedgerError:
    code = getattr(exc, "sqlite_errorcode", None)
    if (
        code == sqlite3.SQLITE_FULL
        or "disk is full" in str(exc)
        or "database or disk is full" in str(exc)
    ):
        err: LedgerError = DiskFull(
            f"{path}: the disk is full; nothing was recorded. Free space on "
            f"{path.parent} (see `edge-agent doctor`)."
        )
    else:
        err = LedgerError(f"{path}: {exc}")
    err.__cause__ = exc
    return err
