"""Opening the database file: pragmas, integrity check, migrations, first-start identity."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path

from edge_agent.errors import DatabaseCorrupt, LedgerError, SchemaTooNew
from edge_agent.ledger.migrations import Migration, discover
from sync.wire import now_ts

# 64 MiB: bounds the WAL file after checkpoints so a long backlog cannot keep disk hostage.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the ledger's pragmas. Autocommit mode: we issue BEGIN ourselves."""
    try:
        if readonly:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                check_same_thread=False,
            )
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 5000")
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerError(f"{path}: cannot switch to WAL mode (got {mode})")
            # FULL: a commit survives power loss, not only a process crash (FIELD-NOTES).
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
    except sqlite3.DatabaseError as exc:
        raise DatabaseCorrupt(f"{path}: not a usable SQLite database ({exc})") from exc
    return conn


def quick_check(conn: sqlite3.Connection, path: Path) -> None:
    try:
        rows = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        raise DatabaseCorrupt(f"{path}: integrity check failed: {exc}") from exc
    if rows != ["ok"]:
        raise DatabaseCorrupt(
            f"{path}: integrity check failed: {'; '.join(rows[:5])}. Restore the latest "
            "backup with `edge-agent db restore` (a new epoch keeps central consistent)."
        )


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection, path: Path, migrations: Sequence[Migration] | None = None
) -> int:
    """Bring the schema to the newest version, one transaction per migration."""
    migrations = discover() if migrations is None else list(migrations)
    latest = migrations[-1].version if migrations else 0
    current = schema_version(conn)
    if current > latest:
        raise SchemaTooNew(
            f"{path}: schema version {current} is newer than this agent's {latest}; "
            "upgrade edge-agent or restore a backup made by this version"
        )
    for migration in migrations:
        if migration.version <= current:
            continue
        try:
            conn.executescript(
                "BEGIN IMMEDIATE;\n"
                f"{migration.sql}\n"
                f"PRAGMA user_version = {migration.version};\n"
                "COMMIT;"
            )
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise LedgerError(
                f"{path}: migration {migration.name} failed and was rolled back: {exc}"
            ) from exc
        current = migration.version
    return current


def ensure_identity(conn: sqlite3.Connection, path: Path, store_id: str) -> bool:
    """Give a new database its store id and first epoch; check an old one's store id.

    Returns True when the database was new.
    """
    row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    if row is not None:
        if row[0] != store_id:
            raise LedgerError(
                f"{path} belongs to store {row[0]!r}, but the configuration says {store_id!r}; "
                "fix store.id or point database.path at this store's file"
            )
        return False
    now = now_ts()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [
                ("store_id", store_id),
                ("created_at", now),
                ("applied_cseq", "0"),
                # §5.2: a new database applies no command before its first resync.
                ("resync_needed", "1"),
                ("resync_reason", "new database"),
            ],
        )
        conn.execute(
            "INSERT INTO epochs (ordinal, epoch, created_at, reason) VALUES (1, ?, ?, ?)",
            (str(uuid.uuid4()), now, "new database"),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True
