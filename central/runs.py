"""Reading central's event log (``event_runs``, written by the core) and its stock projection.

The stock table is a checkpoint: it holds every command and, per (store, epoch), the events
through ``epochs.projected_seq``. Events applied after that are in ``event_runs`` only, until
the writer's next projection flush. Readers that need the exact stock (the snapshot, the
API, the digest check) add those events back with :func:`stock_cells`, inside the same
consistent read; so the checkpoint can lag by a second under load without anyone seeing it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from central.batches import HASH_BYTES, add_pairs, raw_deltas, split_run
from central.storage import Connection
from sync.errors import WireFormatError


def _bytes(value: Any) -> bytes:
    """A BLOB/BYTEA column as bytes, whatever the driver returned."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"unexpected column type {type(value).__name__}")


def _stored(conn: Connection, store: str, epoch: str, first: int, last: int
            ) -> Iterator[tuple[int, bytes, msgspec.Raw]]:
    """(seq, SHA-256, bytes as received) of the stored events with ``first <= seq <= last``,
    in seq order: an index seek to the run holding ``first``, then a range scan."""
    if last < first:
        return
    rows = conn.execute(
        "SELECT MAX(first_seq) FROM event_runs WHERE store = ? AND epoch = ? AND first_seq <= ?",
        (store, epoch, first))
    start = rows[0][0] if rows and rows[0][0] is not None else first
    for run_first, hashes, body in conn.execute(
            "SELECT first_seq, hashes, body FROM event_runs WHERE store = ? AND epoch = ? "
            "AND first_seq >= ? AND first_seq <= ? ORDER BY first_seq",
            (store, epoch, start, last)):
        digests = _bytes(hashes)
        base = int(run_first)
        for index, raw in enumerate(split_run(_bytes(body))):
            seq = base + index
            if first <= seq <= last:
                yield seq, digests[index * HASH_BYTES:(index + 1) * HASH_BYTES], raw


def stored_events(conn: Connection, store: str, epoch: str, first: int, last: int
                  ) -> dict[int, tuple[bytes, msgspec.Raw]]:
    """seq → (SHA-256, bytes as received) of the stored events in ``first..last``."""
    return {seq: (digest, raw) for seq, digest, raw in _stored(conn, store, epoch, first, last)}


def quarantined_seqs(conn: Connection, store: str, epoch: str) -> set[int]:
    return {int(seq) for (seq,) in conn.execute(
        "SELECT seq FROM quarantine WHERE store = ? AND epoch = ?", (store, epoch))}


def unprojected(conn: Connection, store: str | None = None
                ) -> list[tuple[str, str, int, int]]:
    """(store, epoch, projected_seq, applied_seq) of the epochs the stock table lags."""
    sql = ("SELECT store, epoch, projected_seq, applied_seq FROM epochs "
           "WHERE projected_seq < applied_seq")
    params: tuple[Any, ...] = ()
    if store is not None:
        sql += " AND store = ?"
        params = (store,)
    return [(s, e, int(p), int(a)) for s, e, p, a in conn.execute(sql + " ORDER BY store, epoch",
                                                                   params)]


def add_events(cells: dict[str, list[int]], conn: Connection, store: str, epoch: str,
               seqs: tuple[int, int], *, sign: int = 1) -> None:
    """Add (or with ``sign=-1`` take away) the stock effect of the stored events
    ``after < seq <= through`` of one epoch, ``seqs = (after, through)``; quarantined events
    have none."""
    after, through = seqs
    skip = quarantined_seqs(conn, store, epoch)
    for seq, _, raw in _stored(conn, store, epoch, after + 1, through):
        if seq in skip:
            continue
        try:
            moves, holds = raw_deltas(raw)
        except WireFormatError:
            continue  # cannot happen for an applied event that is not quarantined
        add_pairs(cells, moves, holds, sign)


def stock_cells(conn: Connection, store: str) -> dict[str, list[int]]:
    """sku → [on_hand, reserved] of one store: every applied event and issued command.
    Run it inside one consistent read (or the writer's transaction)."""
    cells: dict[str, list[int]] = {
        sku: [int(on), int(res)] for sku, on, res in conn.execute(
            "SELECT sku, on_hand, reserved FROM stock WHERE store = ?", (store,))}
    for _, epoch, projected, applied in unprojected(conn, store):
        add_events(cells, conn, store, epoch, (projected, applied))
    return cells
