"""The ledger's single writer thread: group commit of queued ops, callers answered after.

The writer takes every op waiting (up to :data:`GROUP_MAX`), runs them in ONE
``BEGIN IMMEDIATE`` transaction and commits with ``synchronous=FULL``; only then are the
callers answered. An op that raises is rolled back alone (a savepoint when it touched SQL,
nothing to undo otherwise) and its exception goes to its caller; the others commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

from edge_agent.ledger.errors_map import map_sqlite_error
from edge_agent.ledger.records import SEQ_MASK, event_key
from edge_agent.ledger.tx import Group, Head, Tx, flush_group

log = structlog.get_logger("edge_agent.ledger")

GROUP_MAX: Final = 2000
STOP: Final = object()


@dataclass(slots=True)
class Request:
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


def load_head(conn: sqlite3.Connection) -> tuple[int, str, int]:
    """The newest epoch's (ordinal, id, last seq), the seq read from the events themselves."""
    row = conn.execute(
        "SELECT ordinal, epoch FROM epochs ORDER BY ordinal DESC LIMIT 1"
    ).fetchone()
    ordinal, epoch = int(row[0]), str(row[1])
    # The events table is the truth for seq; epochs.last_seq is a cache of it.
    top = conn.execute(
        "SELECT max(id) FROM events WHERE id BETWEEN ? AND ?",
        (event_key(ordinal, 0), event_key(ordinal, SEQ_MASK)),
    ).fetchone()[0]
    last_seq = int(top) & SEQ_MASK if top is not None else 0
    return ordinal, epoch, last_seq


class Writer:
    """Owns the write connection and the thread that drains :attr:`queue` in groups."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self.queue: queue.SimpleQueue[Request | object] = queue.SimpleQueue()
        self.listeners: list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = []
        self.head = Head(*load_head(conn))
        self._thread = threading.Thread(target=self._loop, name="ledger-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish every queued op, then close the connection."""
        self.queue.put(STOP)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            first = self.queue.get()
            if first is STOP:
                break
            batch: list[Request] = [first]  # type: ignore[list-item]  # STOP handled above
            stop = False
            while len(batch) < GROUP_MAX:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]  # only Request besides STOP
            self._run_group(batch)
            if stop:
                break
        self._conn.close()

    def _run_group(self, batch: list[Request]) -> None:
        conn = self._conn
        group = Group()
        outcomes: list[tuple[Request, bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            error = map_sqlite_error(exc, self.path)
            self._resolve([(request, False, error) for request in batch])
            return
        for request in batch:
            if request.future is not None and not request.future.set_running_or_notify_cancel():
                continue
            tx = Tx(self.head, group, conn)
            try:
                result = request.op(tx)
                tx.finish()
            except Exception as raised:  # noqa: BLE001 - the op's own error goes to its caller
                failure: BaseException = (
                    map_sqlite_error(raised, self.path)
                    if isinstance(raised, sqlite3.Error)
                    else raised
                )
                try:
                    tx.abort()
                except sqlite3.Error as abort_exc:
                    outcomes.append((request, False, failure))
                    self._fail_group(outcomes, abort_exc)
                    return
                outcomes.append((request, False, failure))
                continue
            outcomes.append((request, True, result))
        try:
            flush_group(conn, group)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._fail_group(outcomes, exc)
            return
        self._resolve(outcomes)
        if group.appended:
            self._notify()

    def _resolve(self, outcomes: list[tuple[Request, bool, Any]]) -> None:
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

    def _fail_group(self, outcomes: list[tuple[Request, bool, Any]], exc: sqlite3.Error) -> None:
        """The transaction itself failed: nothing of it is durable, every caller learns so."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("ROLLBACK")
        self.head.restore(load_head(self._conn))
        error = map_sqlite_error(exc, self.path)
        log.error("ledger transaction failed", error=str(error), ops=len(outcomes))
        self._resolve([(request, False, error if ok else value) for request, ok, value in outcomes])

    def _notify(self) -> None:
        for loop, callback in self.listeners:
            with contextlib.suppress(RuntimeError):  # that loop is already closed
                loop.call_soon_threadsafe(callback)
