"""One storage interface for the reference central: embedded SQLite or PostgreSQL.

SQL is written once with ``?`` placeholders and portable ``ON CONFLICT`` upserts; the
PostgreSQL adapter rewrites placeholders to ``%s``. Only the DDL differs per dialect.
Every driver error is mapped to :class:`StorageError` here, at the adapter.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from central.customer_tables import CUSTOMER_TABLES
from central.errors import StorageError
from central.history_schema import HISTORY_TABLES
from central.schema_versions import (
    EVENTS_VIEW,
    SCHEMA_VERSION,
    migrate_events_table,
    refuse_newer,
    schema_version,
    table_kind,
    tune_toast,
)
from sync.files import private_database

Dialect = Literal["sqlite", "postgres"]
Row = tuple[Any, ...]

_TABLES = """
CREATE TABLE IF NOT EXISTS stores (
    store TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'unknown',
    epoch TEXT,
    boot_id TEXT,
    agent TEXT,
    last_seq BIGINT,
    birth_applied_cseq BIGINT,
    state_ts TEXT,
    issued_cseq BIGINT NOT NULL DEFAULT 0,
    acked_cseq BIGINT,
    health TEXT,
    health_ts TEXT,
    last_digest TEXT,
    digest_result TEXT
);
CREATE TABLE IF NOT EXISTS epochs (
    store TEXT NOT NULL,
    epoch TEXT NOT NULL,
    applied_seq BIGINT NOT NULL DEFAULT 0,
    max_seen_seq BIGINT NOT NULL DEFAULT 0,
    projected_seq BIGINT NOT NULL DEFAULT 0,
    first_seen TEXT NOT NULL,
    PRIMARY KEY (store, epoch)
);
CREATE TABLE IF NOT EXISTS event_runs (
    store TEXT NOT NULL,
    epoch TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    hashes {blob} NOT NULL,
    body {blob} NOT NULL,
    received TEXT NOT NULL,
    PRIMARY KEY (store, epoch, first_seq)
);
CREATE TABLE IF NOT EXISTS quarantine (
    store TEXT NOT NULL,
    epoch TEXT NOT NULL,
    seq BIGINT NOT NULL,
    reason TEXT NOT NULL,
    resolved INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (store, epoch, seq)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stock (
    store TEXT NOT NULL,
    sku TEXT NOT NULL,
    on_hand BIGINT NOT NULL DEFAULT 0,
    reserved BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (store, sku)
);
CREATE TABLE IF NOT EXISTS catalog (
    store TEXT NOT NULL,
    sku TEXT NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (store, sku)
);
CREATE TABLE IF NOT EXISTS reservations (
    store TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    order_ref TEXT NOT NULL,
    lines TEXT NOT NULL,
    expires_at TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'open',
    closed_by TEXT,
    PRIMARY KEY (store, reservation_id)
);
CREATE TABLE IF NOT EXISTS count_requests (
    store TEXT NOT NULL,
    count_id TEXT NOT NULL,
    skus TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'open',
    PRIMARY KEY (store, count_id)
);
CREATE TABLE IF NOT EXISTS commands (
    store TEXT NOT NULL,
    cseq BIGINT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (store, cseq)
);
CREATE TABLE IF NOT EXISTS devices (
    store TEXT NOT NULL,
    device TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (store, device)
);
CREATE TABLE IF NOT EXISTS recall_sightings (
    store TEXT NOT NULL,
    recall_id TEXT NOT NULL,
    gtin TEXT NOT NULL,
    lot TEXT,
    serial TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    first_ts TEXT NOT NULL,
    last_ts TEXT NOT NULL,
    PRIMARY KEY (store, recall_id)
);
CREATE TABLE IF NOT EXISTS drops (
    store TEXT NOT NULL,
    reason TEXT NOT NULL,
    count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (store, reason)
);
CREATE TABLE IF NOT EXISTS alert_acks (
    id BIGINT PRIMARY KEY,
    acked_at TEXT NOT NULL,
    note TEXT
);
"""

_ALERTS = {
    "sqlite": "CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, ",
    "postgres": "CREATE TABLE IF NOT EXISTS alerts (id BIGSERIAL PRIMARY KEY, ",
}
_ALERTS_TAIL = (
    "ts TEXT NOT NULL, store TEXT NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL, "
    "detail TEXT NOT NULL)"
)


_ADD_STOCK = (
    "INSERT INTO stock (store, sku, on_hand, reserved) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (store, sku) DO UPDATE SET on_hand = stock.on_hand + excluded.on_hand, "
    "reserved = stock.reserved + excluded.reserved"
)


class Connection(Protocol):
    """What the central needs from a database connection."""

    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None: ...

    def add_stock(self, rows: Sequence[tuple[str, str, int, int]]) -> None:
        """Add (store, sku, on_hand delta, reserved delta); one row per (store, sku)."""

    def begin_write(self) -> None: ...

    def begin_read(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


class SqliteConnection:
    dialect: Dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # A run row holds a batch's events (~350 KB for 1000 sales): 16 KiB pages carry
            # it in a quarter of the overflow pages, WAL frames and writes of 4 KiB ones.
            # Takes effect when the file is created; an existing database keeps its size.
            self._db.execute("PRAGMA page_size=16384")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute("PRAGMA journal_size_limit=67108864")
            # the committing writer pays each checkpoint: fewer, larger ones cost less per
            # event than SQLite's default of 4 MB (1024 pages: 16 MB at 16 KiB pages)
            self._db.execute("PRAGMA wal_autocheckpoint=1024")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open SQLite database {path}: {exc}",
                               backend="sqlite") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite: {exc}", backend="sqlite") from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite: {exc}", backend="sqlite") from exc

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        marks = ", ".join("?" * len(columns))
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def add_stock(self, rows: Sequence[tuple[str, str, int, int]]) -> None:
        self.executemany(_ADD_STOCK, rows)

    def begin_write(self) -> None:
        self.execute("BEGIN IMMEDIATE")

    def begin_read(self) -> None:
        self.execute("BEGIN")
        # a deferred transaction takes its snapshot at the first read
        self.execute("SELECT 1 FROM stores LIMIT 1")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.in_transaction:
            self.execute("ROLLBACK")

    def checkpoint(self) -> None:
        self.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self._db.close()


class PostgresConnection:
    dialect: Dialect = "postgres"

    def __init__(self, url: str) -> None:
        import psycopg  # noqa: PLC0415 - optional dependency, only for PostgreSQL

        self._psycopg = psycopg
        self._sql_cache: dict[str, str] = {}
        try:
            self._db = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {type(exc).__name__}",
                               backend="postgresql") from exc

    def _sql(self, sql: str) -> str:
        out = self._sql_cache.get(sql)
        if out is None:
            out = self._sql_cache[sql] = sql.replace("?", "%s")
        return out

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cur = self._db.execute(self._sql(sql), params)
            return cur.fetchall() if cur.description is not None else []
        except self._psycopg.Error as exc:
            raise StorageError(f"PostgreSQL: {exc}", backend="postgresql") from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            with self._db.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
        except self._psycopg.Error as exc:
            raise StorageError(f"PostgreSQL: {exc}", backend="postgresql") from exc

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        """Bulk insert with COPY: several times faster than executemany for big groups."""
        try:
            with self._db.cursor() as cur, cur.copy(
                    f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except self._psycopg.Error as exc:
            raise StorageError(f"PostgreSQL: {exc}", backend="postgresql") from exc

    def add_stock(self, rows: Sequence[tuple[str, str, int, int]]) -> None:
        if len(rows) < 64:
            self.executemany(_ADD_STOCK, rows)
            return
        # big groups: COPY into a temporary table, then one set-based upsert
        self.execute("CREATE TEMP TABLE IF NOT EXISTS stock_delta (store TEXT, sku TEXT, "
                     "on_hand BIGINT, reserved BIGINT) ON COMMIT DELETE ROWS")
        self.insert_rows("stock_delta", ("store", "sku", "on_hand", "reserved"), rows)
        self.execute(
            "INSERT INTO stock (store, sku, on_hand, reserved) SELECT store, sku, on_hand, "
            "reserved FROM stock_delta ON CONFLICT (store, sku) DO UPDATE SET "
            "on_hand = stock.on_hand + excluded.on_hand, "
            "reserved = stock.reserved + excluded.reserved")
        self.execute("DELETE FROM stock_delta")

    def begin_write(self) -> None:
        self.execute("BEGIN")

    def begin_read(self) -> None:
        self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except self._psycopg.Error:
            self._db.rollback()

    def close(self) -> None:
        self._db.close()


class Database:
    """Factory of connections for one configured database, plus the schema."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith(("postgresql://", "postgres://")):
            self.dialect: Dialect = "postgres"
            self._path: Path | None = None
        elif url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            self._path = Path(url.removeprefix("sqlite:///"))
        else:
            raise StorageError("database_url must start with sqlite:/// or postgresql://")

    def connect(self) -> Connection:
        if self.dialect == "postgres":
            return PostgresConnection(self.url)
        if self._path is None:
            raise StorageError("no SQLite path")
        private_database(self._path)  # 0640 (and its -wal, -shm), parents 0750
        return SqliteConnection(self._path)

    def create_schema(self) -> None:
        """Create the schema, or bring an older one up to ``SCHEMA_VERSION``
        (:mod:`central.schema_versions`) in one transaction. A database written by a newer
        central is refused."""
        conn = self.connect()
        try:
            conn.begin_write()
            refuse_newer(schema_version(conn))
            legacy = table_kind(conn, "events") == "table"
            blob = "BYTEA" if self.dialect == "postgres" else "BLOB"
            statements = [s.strip() for s in _TABLES.format(blob=blob).split(";") if s.strip()]
            statements.append(_ALERTS[self.dialect] + _ALERTS_TAIL)
            statements.extend(CUSTOMER_TABLES)
            statements.extend(HISTORY_TABLES)  # central.history
            statements.append(
                "CREATE INDEX IF NOT EXISTS quarantine_open ON quarantine (store) "
                "WHERE resolved = 0")
            for statement in statements:
                conn.execute(statement)
            if self.dialect == "postgres":
                tune_toast(conn)
            if legacy:
                migrate_events_table(conn)
            if table_kind(conn, "events") is None:
                conn.execute(EVENTS_VIEW[self.dialect])
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                         (str(SCHEMA_VERSION),))
            conn.commit()
        except StorageError:
            conn.rollback()
            raise
        finally:
            conn.close()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """One consistent read (a snapshot) on a fresh connection."""
        conn = self.connect()
        try:
            conn.begin_read()
            yield conn
            conn.commit()
        finally:
            conn.rollback()
            conn.close()

