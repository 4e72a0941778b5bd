"""The ledger facade: opens the store's SQLite ledger and composes its parts.

:class:`Ledger` holds the lock file (:mod:`~edge_agent.ledger.lockfile`), the single
writer thread with its group commit (:mod:`~edge_agent.ledger.writer`, ops get a
:class:`~edge_agent.ledger.tx.Tx`), and the read pool (:mod:`~edge_agent.ledger.readers`)
running the queries of :mod:`~edge_agent.ledger.queries`; it adds the outbox's and
sync's calls on top.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from edge_agent.errors import LedgerClosed
from edge_agent.ledger import schema
from edge_agent.ledger.lockfile import acquire_lock, clean_stop_matches, write_clean_stop
from edge_agent.ledger.queries import (
    read_digest_state,
    read_epochs,
    read_event_range,
    read_events_after,
    read_stats,
)
from edge_agent.ledger.readers import Readers
from edge_agent.ledger.records import EpochInfo, LedgerStats, StoredEvent, event_key
from edge_agent.ledger.tx import Tx
from edge_agent.ledger.writer import Request, Writer
from edge_agent.memory import trim_heap
from sync.files import private_database, private_dir
from sync.store_port import DigestFigures

T = TypeVar("T")


class Ledger:
    """The store's durable ledger. Open with :meth:`open`; one per database file."""

    def __init__(
        self, path: Path, store_id: str, conn: sqlite3.Connection, lock_fd: int, *, is_new: bool
    ) -> None:
        self.path = path
        self.store_id = store_id
        self.is_new = is_new
        self._lock_fd = lock_fd
        self._closed = False
        self.memory_releases = 0  # times release_memory() gave caches back
        self._readers = Readers(path)
        self._writer = Writer(path, conn)
        self._queue = self._writer.queue

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

    @property
    def current_epoch(self) -> str:
        return self._writer.head.epoch

    # -- writing -------------------------------------------------------------------------
    def submit(self, op: Callable[[Tx], T]) -> concurrent.futures.Future[T]:
        if self._closed:
            raise LedgerClosed("the ledger is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(Request(op, future))
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
        self._queue.put(Request(op, None, waiter, loop))
        return await waiter

    def write_blocking(self, op: Callable[[Tx], T]) -> T:
        return self.submit(op).result()

    def add_commit_listener(self, callback: Callable[[], None]) -> None:
        """``callback()`` runs on the current event loop after each commit with new events."""
        self._writer.listeners.append((asyncio.get_running_loop(), callback))

    def remove_commit_listener(self, callback: Callable[[], None]) -> None:
        writer = self._writer
        writer.listeners = [(lp, cb) for lp, cb in writer.listeners if cb is not callback]

    # -- reading -------------------------------------------------------------------------
    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise LedgerClosed("the ledger is closed")
        return await self._readers.read(fn)

    def read_blocking(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise LedgerClosed("the ledger is closed")
        return self._readers.read_blocking(fn)

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
            self._readers.shrink_memory()
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
        self._writer.stop()
        self._readers.close()
        write_clean_stop(self.path, self._lock_fd)
        os.close(self._lock_fd)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
