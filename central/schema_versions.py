"""Versions of the central's database schema: read the version a database has, refuse a
newer one, migrate schema 1 to 2 (events into runs), and the per-dialect tuning and view
that :meth:`central.storage.Database.create_schema` applies after its DDL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from central.errors import StorageError

if TYPE_CHECKING:
    from central.storage import Connection, Dialect

SCHEMA_VERSION = 2
"""1: one row per event in ``events``. 2: events stored in runs (``event_runs``), a
``quarantine`` table, a lazily checkpointed stock projection (``epochs.projected_seq``), and
``events`` kept as a read-only view for operators' queries."""

EVENTS_VIEW: dict[Dialect, str] = {
    "sqlite": (
        "CREATE VIEW events AS SELECT r.store AS store, r.epoch AS epoch, "
        "r.first_seq + j.key AS seq, lower(hex(substr(r.hashes, 32 * j.key + 1, 32))) AS hash, "
        "json_extract(j.value, '$.type') AS type, j.value AS body, q.reason AS quarantine, "
        "COALESCE(q.resolved, 0) AS resolved, r.received AS received "
        "FROM event_runs AS r, json_each(CAST(r.body AS TEXT)) AS j "
        "LEFT JOIN quarantine AS q ON q.store = r.store AND q.epoch = r.epoch "
        "AND q.seq = r.first_seq + j.key"),
    "postgres": (
        "CREATE VIEW events AS SELECT r.store AS store, r.epoch AS epoch, "
        "r.first_seq + e.ord - 1 AS seq, "
        "encode(substring(r.hashes FROM (32 * (e.ord - 1) + 1)::int FOR 32), 'hex') AS hash, "
        "e.value ->> 'type' AS type, e.value::text AS body, q.reason AS quarantine, "
        "COALESCE(q.resolved, 0) AS resolved, r.received AS received "
        "FROM event_runs AS r CROSS JOIN LATERAL "
        "json_array_elements(convert_from(r.body, 'UTF8')::json) WITH ORDINALITY AS e(value, ord) "
        "LEFT JOIN quarantine AS q ON q.store = r.store AND q.epoch = r.epoch "
        "AND q.seq = r.first_seq + e.ord - 1"),
}


def table_kind(conn: Connection, name: str) -> Literal["table", "view"] | None:
    if conn.dialect == "sqlite":
        rows = conn.execute("SELECT type FROM sqlite_master WHERE name = ?", (name,))
    else:
        rows = conn.execute(
            "SELECT CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END FROM "
            "information_schema.tables WHERE table_schema = current_schema() AND "
            "table_name = ?", (name,))
    if not rows:
        return None
    return "view" if rows[0][0] == "view" else "table"


def schema_version(conn: Connection) -> int:
    if table_kind(conn, "meta") is None:
        return 1 if table_kind(conn, "stores") is not None else 0
    rows = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")
    return int(rows[0][0]) if rows else 1


def _columns(conn: Connection, table: str) -> set[str]:
    if conn.dialect == "sqlite":
        return {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}
    return {str(row[0]) for row in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE "
        "table_schema = current_schema() AND table_name = ?", (table,))}


_MIGRATION_RUN = 1000
_MIGRATION_PAGE = 20_000


def migrate_events_table(conn: Connection) -> None:
    """Schema 1 → 2: the one-row-per-event table becomes runs (contiguous seqs, at most
    1000 events each) and quarantine rows, read a page at a time so a large history never
    sits in memory whole. Its stock was always up to date, so every epoch is projected
    through what it applied."""
    if "projected_seq" not in _columns(conn, "epochs"):
        conn.execute("ALTER TABLE epochs ADD COLUMN projected_seq BIGINT NOT NULL DEFAULT 0")
    conn.execute("UPDATE epochs SET projected_seq = applied_seq")
    current: list[tuple[Any, ...]] = []
    runs: list[tuple[Any, ...]] = []

    def close_run() -> None:
        if current:
            store, epoch, first = current[0][0], current[0][1], int(current[0][2])
            body = b"[" + b",".join(str(row[4]).encode() for row in current) + b"]"
            hashes = b"".join(bytes.fromhex(str(row[3])) for row in current)
            runs.append((store, epoch, first, first + len(current) - 1, hashes, body,
                         current[-1][7]))
            current.clear()

    after: tuple[Any, ...] = ("", "", 0)
    while True:
        page = conn.execute(
            "SELECT store, epoch, seq, hash, body, quarantine, resolved, received FROM events "
            "WHERE (store, epoch, seq) > (?, ?, ?) ORDER BY store, epoch, seq LIMIT ?",
            (*after, _MIGRATION_PAGE))
        for row in page:
            if current and (row[0] != current[-1][0] or row[1] != current[-1][1]
                            or int(row[2]) != int(current[-1][2]) + 1
                            or len(current) >= _MIGRATION_RUN):
                close_run()
            current.append(row)
        quarantine = [(r[0], r[1], int(r[2]), r[5], int(r[6])) for r in page if r[5] is not None]
        if quarantine:
            conn.executemany(
                "INSERT INTO quarantine (store, epoch, seq, reason, resolved) "
                "VALUES (?, ?, ?, ?, ?)", quarantine)
        if len(page) < _MIGRATION_PAGE:
            close_run()
        if runs:
            conn.insert_rows("event_runs", ("store", "epoch", "first_seq", "last_seq", "hashes",
                                            "body", "received"), runs)
            runs.clear()
        if len(page) < _MIGRATION_PAGE:
            break
        after = (page[-1][0], page[-1][1], int(page[-1][2]))
    conn.execute("DROP TABLE events")


def refuse_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"the database has schema version {version}, newer than this central's "
            f"{SCHEMA_VERSION}: upgrade edge-central")


def tune_toast(conn: Connection) -> None:
    """PostgreSQL compresses large values with pglz by default: the digests never compress
    (random bytes) and pglz on event bodies costs the server more CPU than the apply itself.
    Store the digests as they are, and compress bodies with lz4 where the server has it."""
    conn.execute("ALTER TABLE event_runs ALTER COLUMN hashes SET STORAGE EXTERNAL")
    lz4 = conn.execute("SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
                       "AND 'lz4' = ANY(enumvals)")
    if lz4:
        conn.execute("ALTER TABLE event_runs ALTER COLUMN body SET COMPRESSION lz4")
