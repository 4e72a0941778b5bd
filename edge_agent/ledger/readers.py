"""The ledger's read side: read-only connections, one per pool thread, off the event loop.

Each read runs ``fn(conn)`` in one read transaction on a pool thread, so readers never
wait for the writer (WAL) and the event loop never blocks on SQLite.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from edge_agent.ledger import schema
from edge_agent.ledger.errors_map import map_sqlite_error

T = TypeVar("T")


class Readers:
    """A two-thread pool, each thread with its own read-only connection to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="ledger-read"
        )

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = schema.connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _read_in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise map_sqlite_error(exc, self.path) from exc
        finally:
            conn.execute("COMMIT")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self._pool.submit(self._read_in_thread, fn))

    def read_blocking(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._pool.submit(self._read_in_thread, fn).result()

    def shrink_memory(self) -> None:
        """Let every reader give its page cache back (blocking; run it off the loop)."""
        # sqlite3.threadsafety is 3 (serialized): a connection may be used from any
        # thread; shrink_memory frees only pages no statement holds
        with self._lock:
            for conn in self._conns:
                conn.execute("PRAGMA shrink_memory")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
