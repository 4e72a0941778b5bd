"""Destroyed pseudonym keys really leave the disk: checkpoint the WAL (TRUNCATE), then
read the ledger's files to prove the old key's bytes are gone, retrying with jittered
backoff until they are.

Deleting a key row (with ``secure_delete``) only writes a new page version into the WAL;
the old key stays in ``ledger.db`` and in earlier WAL frames until a checkpoint copies the
new page over it and the WAL is truncated. A checkpoint is refused ("busy") while a reader
holds an older snapshot (a ``db backup``, a long report). :class:`KeyShredder` keeps the
destroyed keys in memory (never on disk) until a ``PRAGMA wal_checkpoint(TRUNCATE)``
completes and none of the files (``ledger.db``, ``-wal``, ``-shm``) contains any of them;
only then does it log that the keys are destroyed. Each failed round is a warning and a
counted figure (``key_checkpoint_busy``); ``keys_pending_destruction`` is the gauge.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

import structlog

log = structlog.get_logger("edge_agent.visitors")

RETRY_FIRST_S: Final = 1.0
RETRY_MAX_S: Final = 300.0
# short: a pending TRUNCATE checkpoint holds up the ledger's writer while it waits
CHECKPOINT_BUSY_TIMEOUT_S: Final = 0.5
SCAN_CHUNK: Final = 1 << 20


def files_of(path: Path) -> list[Path]:
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm")]


def found_in_files(path: Path, secrets: Iterable[bytes]) -> list[str]:
    """Names of the database's files that still contain any of ``secrets``.

    Plain reads in chunks (with an overlap), never mmap: the agent's own writer may
    truncate the WAL meanwhile, and touching a truncated mapping is a SIGBUS."""
    wanted = [s for s in secrets if s]
    if not wanted:
        return []
    overlap = max(len(s) for s in wanted) - 1
    hits: list[str] = []
    for file in files_of(path):
        try:
            with file.open("rb") as handle:
                tail = b""
                while chunk := handle.read(SCAN_CHUNK):
                    window = tail + chunk
                    if any(secret in window for secret in wanted):
                        hits.append(file.name)
                        break
                    tail = window[-overlap:] if overlap else b""
        except FileNotFoundError:
            continue
    return hits


def checkpoint_truncate(path: Path) -> bool:
    """``PRAGMA wal_checkpoint(TRUNCATE)`` on its own connection; False when busy."""
    conn = sqlite3.connect(path, timeout=CHECKPOINT_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        conn.close()
    return int(busy) == 0


class KeyShredder:
    """Destroyed keys in memory until their bytes have left every file of the ledger."""

    def __init__(self, path: Path, clock: Callable[[], float],
                 rng: random.Random | None = None) -> None:
        self._path = Path(path)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._pending: list[bytes] = []
        self._next_at: float | None = None  # None: nothing to do
        self._delay = RETRY_FIRST_S
        self._lock = asyncio.Lock()
        self.figures: dict[str, int] = {"key_checkpoint_busy": 0, "keys_destroyed": 0}

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, keys: Iterable[bytes]) -> None:
        """Keys just deleted from the ledger (possibly none: a checkpoint is still due)."""
        self._pending.extend(k for k in keys if k)
        self._next_at = 0.0
        self._delay = RETRY_FIRST_S

    async def step(self) -> bool:
        """Try once when due; True when nothing remains to destroy."""
        if self._next_at is None or self._clock() < self._next_at:
            return not self._pending
        async with self._lock:
            pending = list(self._pending)
            try:
                done = await asyncio.to_thread(checkpoint_truncate, self._path)
                hits = await asyncio.to_thread(found_in_files, self._path, pending) \
                    if done else []
            except (sqlite3.Error, OSError) as exc:
                done, hits = False, [type(exc).__name__]
            if done and not hits:
                self._pending = self._pending[len(pending):]
                self._next_at = None
                if pending:
                    self.figures["keys_destroyed"] += len(pending)
                    log.info("visitors: old pseudonym key destroyed; its bytes are in no "
                             "file of the ledger", keys=len(pending))
                else:
                    log.info("visitors: ledger checkpointed; no deleted key left in the WAL")
                return not self._pending
            self.figures["key_checkpoint_busy"] += 1
            delay = self._delay
            self._delay = min(RETRY_MAX_S, self._delay * 2)
            wait = delay / 2 + self._rng.uniform(0, delay / 2)  # jittered
            self._next_at = self._clock() + wait
            log.warning("visitors: checkpoint busy, the old key is still on disk; retrying",
                        still_in=hits or ["wal (checkpoint busy)"], retry_in_s=round(wait, 1),
                        attempts=self.figures["key_checkpoint_busy"])
            return False
