"""The writer's side of store ownership: which partitions it holds, with which fencing
token, and the check that it still holds them, inside each apply transaction.

:meth:`Fencing.begin` runs first in every write transaction of the core: it locks the held
partitions' lease rows ``FOR SHARE`` and compares worker and token with what this writer
believes. A takeover (``UPDATE`` of the row, token + 1) therefore waits for this transaction
to commit, and a transaction that starts after a takeover sees the new token and raises
:class:`Fenced`: the core rolls back, acknowledges nothing and reloads its state without the
lost partition. Two workers can never commit an apply for the same store under the same
lease, whatever the clocks say. :meth:`Fencing.log` writes who applied what, under which
token, in the same transaction (table ``fencing_log``). Order writes
(``Core.run_write``) run :meth:`begin` too, and :meth:`require` refuses a command to a store
whose partition this worker does not hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from central.config import store_partition
from central.errors import StorageError
from central.storage import Connection

log = logging.getLogger("central.fencing")


class Fenced(StorageError):
    """This worker no longer holds a partition it was about to apply for."""


class Fencing:
    """Held partitions (partition → token). Touched only on the writer thread."""

    def __init__(self, worker: str, partitions: int) -> None:
        self.worker = worker
        self.partitions = partitions
        self.held: dict[int, int] = {}
        self.fenced = 0  # transactions refused because a lease had moved on

    def partition(self, store: str) -> int:
        return store_partition(store, self.partitions)

    def owns(self, store: str) -> bool:
        return store_partition(store, self.partitions) in self.held

    def begin(self, conn: Connection) -> None:
        """Lock and check the held leases; raise :class:`Fenced` when one moved on."""
        if not self.held:
            return
        rows = conn.execute(
            "SELECT part, worker, token FROM partition_leases WHERE part = ANY(?) FOR SHARE",
            (sorted(self.held),))
        current = {int(part): (worker, int(token)) for part, worker, token in rows}
        lost = [part for part, token in self.held.items()
                if current.get(part) != (self.worker, token)]
        if lost:
            for part in lost:
                self.held.pop(part, None)
            self.fenced += 1
            log.warning("fenced: partitions %s were taken over; the transaction is dropped",
                        lost)
            raise Fenced(f"lease of partitions {lost} lost")

    def require(self, store: str) -> None:
        """A write of the current transaction touches ``store``: raise :class:`Fenced`
        unless this worker holds its partition (checked in the database by :meth:`begin`)."""
        if not self.owns(store):
            self.fenced += 1
            raise Fenced(f"store {store} is not held by worker {self.worker}")

    def log(self, conn: Connection, keys: Iterable[tuple[str, str]],
            applied: dict[tuple[str, str], int]) -> None:
        rows = []
        now = time.time()
        for store, epoch in keys:
            part = store_partition(store, self.partitions)
            token = self.held.get(part)
            if token is not None:
                rows.append((part, store, epoch, applied.get((store, epoch), 0), self.worker,
                             token, now))
        if rows:
            conn.executemany(
                "INSERT INTO fencing_log (part, store, epoch, applied_seq, worker, token, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
