"""Map a :class:`sqlite3.Error` to the ledger's own error (disk full or a plain failure)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_agent.errors import DiskFull, LedgerError


def map_sqlite_error(exc: sqlite3.Error, path: Path) -> LedgerError:
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
