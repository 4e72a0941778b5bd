"""Backup and restore of the central database: SQLite's online backup API, or PostgreSQL's
``pg_dump``/``pg_restore`` (custom format). A restore leaves the marker that
:mod:`central.restore` reads, so the restored central announces it is behind its stores.

Backup runs while central runs (SQLite's backup API copies a consistent snapshot page by
page; ``pg_dump`` reads one snapshot). Restore needs central stopped: it replaces the whole
database. The PostgreSQL password never appears on a command line (``PGPASSWORD``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from central.errors import StorageError
from central.restore import BACKUP_TAKEN, RESTORED_AT, read_meta, write_meta
from central.storage import Database
from sync.files import private_database
from sync.wire import now_ts


def _pg_tool(name: str) -> str:
    """``pg_dump``/``pg_restore`` from PATH, else Debian's versioned directory."""
    found = shutil.which(name)
    if found:
        return found
    debian = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if debian:
        return str(debian[-1])
    raise StorageError(f"{name} not found: install the PostgreSQL client tools")


def _pg_args(url: str) -> tuple[list[str], dict[str, str]]:
    """Connection options for the PostgreSQL tools, password in the environment only."""
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415 - optional dependency

    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    env = dict(os.environ)
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = password
    flags = {"host": "--host", "port": "--port", "user": "--username", "dbname": "--dbname"}
    args = [f"{flags[k]}={v}" for k, v in params.items() if k in flags]
    return args, env


def _run(cmd: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise StorageError(f"{Path(cmd[0]).name} failed: {result.stderr.strip()[-500:]}")


def _stamp(database_url: str, key: str) -> str:
    ts = now_ts()
    conn = Database(database_url).connect()
    try:
        conn.begin_write()
        write_meta(conn, key, ts)
        conn.commit()
    finally:
        conn.rollback()
        conn.close()
    return ts


def backup(database_url: str, dest: Path) -> str:
    """Write a backup of the (possibly running) central to ``dest``; returns its time."""
    db = Database(database_url)
    if db.dialect == "postgres":
        ts = _stamp(database_url, BACKUP_TAKEN)  # the dump then carries it
        args, env = _pg_args(database_url)
        tmp = dest.with_name(dest.name + ".part")
        _run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={tmp}", *args],
             env)
        tmp.chmod(0o640)
        tmp.replace(dest)
        return ts
    source = Path(database_url.removeprefix("sqlite:///"))
    if not source.exists():
        raise StorageError(f"no SQLite database at {source}")
    tmp = dest.with_name(dest.name + ".part")
    tmp.unlink(missing_ok=True)
    private_database(tmp)
    ts = now_ts()
    try:
        src = sqlite3.connect(source)
        out = sqlite3.connect(tmp)
        try:
            src.backup(out)
            out.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                        "DO UPDATE SET value = excluded.value", (BACKUP_TAKEN, ts))
            out.commit()
            out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            out.close()
            src.close()
    except sqlite3.Error as exc:
        raise StorageError(f"SQLite backup failed: {exc}") from exc
    tmp.chmod(0o640)
    tmp.replace(dest)
    return ts


def restore(database_url: str, source: Path) -> str:
    """Replace central's database (central stopped) with a backup, and mark it restored."""
    if not source.is_file():
        raise StorageError(f"no backup file at {source}")
    db = Database(database_url)
    if db.dialect == "postgres":
        args, env = _pg_args(database_url)
        _run([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner",
              "--single-transaction", *args, str(source)], env)
    else:
        target = Path(database_url.removeprefix("sqlite:///"))
        private_database(target)
        try:
            src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            out = sqlite3.connect(target, timeout=1)
            try:
                src.backup(out)  # page by page under the target's own lock: WAL-safe
            finally:
                out.close()
                src.close()
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite restore failed (is central stopped?): {exc}") from exc
    db.create_schema()  # a backup from an older central is brought up to date
    return _stamp(database_url, RESTORED_AT)


def restore_done(database_url: str) -> str | None:
    """Clear the restore marker (every store has caught up); returns the old marker."""
    conn = Database(database_url).connect()
    try:
        conn.begin_write()
        marker = read_meta(conn, RESTORED_AT)
        conn.execute("DELETE FROM meta WHERE key = ?", (RESTORED_AT,))
        conn.commit()
    finally:
        conn.rollback()
        conn.close()
    return marker
