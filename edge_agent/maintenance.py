"""Database maintenance for ``edge-agent db``: check, backup, restore, vacuum.

* **check** opens the file read-only and runs ``PRAGMA quick_check`` (or the slower
  ``integrity_check``), reads the schema version, store id and epochs.
* **backup** uses SQLite's online backup API in one step, so the copy is one consistent
  snapshot even while the daemon keeps writing (WAL readers never block the writer). The
  copy goes to a temporary file beside the target, is switched to a single-file journal,
  checked, fsynced and renamed into place, and the directory is fsynced.
* **restore** refuses while the daemon holds the database, verifies the backup (integrity,
  schema version, store id), keeps the current file aside as ``*.pre-restore``, puts the
  backup in place and then — in one ledger transaction — starts a new epoch and marks the
  store as needing a resync (PROTOCOL §4.1, §5.3). The backup's own events keep their epoch
  and seq and are still delivered under it.
* **vacuum** refuses while the daemon runs.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.errors import DatabaseCorrupt, DatabaseLocked, LedgerError, SchemaTooNew
from edge_agent.ledger import Ledger, Tx, is_locked, read_epochs
from edge_agent.ledger.lockfile import acquire_lock
from edge_agent.ledger.migrations import discover
from edge_agent.ledger.schema import connect, schema_version
from sync.files import private_dir, private_file

RESTORE_REASON = "restored from backup"
# a backup PATH that does not exist is a file only with one of these suffixes; anything
# else is taken for a directory the operator forgot to create, and refused
BACKUP_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".bak")


@dataclass(frozen=True, slots=True)
class EpochSummary:
    epoch: str
    ordinal: int
    last_seq: int
    acked_seq: int


@dataclass(frozen=True, slots=True)
class DbCheck:
    path: str
    ok: bool
    mode: str
    problems: list[str]
    schema_version: int
    supported_version: int
    store_id: str | None
    epochs: list[EpochSummary] = field(default_factory=list)
    db_bytes: int = 0
    wal_bytes: int = 0
    resync_needed: bool = False


@dataclass(frozen=True, slots=True)
class BackupResult:
    source: str
    path: str
    bytes: int
    store_id: str | None
    epoch: str | None
    last_seq: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RestoreResult:
    path: str
    backup: str
    previous: str | None
    store_id: str
    restored_epochs: list[EpochSummary]
    new_epoch: str


@dataclass(frozen=True, slots=True)
class VacuumResult:
    path: str
    bytes_before: int
    bytes_after: int


def supported_schema_version() -> int:
    migrations = discover()
    return migrations[-1].version if migrations else 0


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def _epochs(conn: sqlite3.Connection) -> list[EpochSummary]:
    # The events table is the truth for seq; epochs.last_seq is a cache of it.
    out = []
    for info in read_epochs(conn):
        top = conn.execute(
            "SELECT max(seq) FROM events WHERE epoch_ordinal = ?", (info.ordinal,)
        ).fetchone()[0]
        out.append(EpochSummary(info.epoch, info.ordinal, max(info.last_seq, int(top or 0)),
                                info.acked_seq))
    return out


def check_database(path: Path, *, full: bool = False) -> DbCheck:
    """Integrity (quick or full), schema version and identity of the file at ``path``.

    Raises :class:`LedgerError` when the file does not exist; a damaged file is reported in
    the result (``ok`` False, ``problems``), not raised.
    """
    path = Path(path)
    if not path.exists():
        raise LedgerError(f"{path}: no database file (the agent creates it on first start, "
                          "or run `edge-agent init`)")
    mode = "integrity_check" if full else "quick_check"
    supported = supported_schema_version()
    problems: list[str] = []
    version = 0
    store_id: str | None = None
    epochs: list[EpochSummary] = []
    resync = False
    try:
        conn = connect(path, readonly=True)
    except DatabaseCorrupt as exc:
        return DbCheck(str(path), False, mode, [str(exc)], 0, supported, None)
    try:
        try:
            rows = [str(r[0]) for r in conn.execute(f"PRAGMA {mode}")]
        except sqlite3.DatabaseError as exc:
            rows = [f"{exc}"]
        if rows != ["ok"]:
            problems.extend(rows[:10])
        try:
            version = schema_version(conn)
            store_id = _meta(conn, "store_id")
            resync = _meta(conn, "resync_needed") == "1"
            epochs = _epochs(conn)
        except sqlite3.DatabaseError as exc:
            problems.append(f"cannot read the ledger tables: {exc}")
    finally:
        conn.close()
    if version > supported:
        problems.append(f"schema version {version} is newer than this agent's {supported}")
    elif version == 0:
        problems.append("not an edge-agent ledger (schema version 0)")
    elif store_id is None:
        problems.append("the database has no store id")
    return DbCheck(
        path=str(path), ok=not problems, mode=mode, problems=problems, schema_version=version,
        supported_version=supported, store_id=store_id, epochs=epochs,
        db_bytes=_file_size(path), wal_bytes=_file_size(Path(f"{path}-wal")),
        resync_needed=resync,
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _copy_consistent(source: sqlite3.Connection, tmp: Path) -> None:
    """Online backup of ``source`` into the new file ``tmp`` as one snapshot, single-file."""
    _remove_quietly(tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal"))
    private_file(tmp)  # 0640 before SQLite writes a byte, whatever the umask
    dest = sqlite3.connect(tmp, isolation_level=None)
    try:
        # pages=-1: the whole database in one step, under one read transaction of the
        # source, so concurrent commits by the daemon cannot make the copy inconsistent.
        source.backup(dest, pages=-1)
        dest.execute("PRAGMA journal_mode = DELETE")
        rows = [str(r[0]) for r in dest.execute("PRAGMA quick_check")]
        if rows != ["ok"]:
            raise DatabaseCorrupt(f"the copy failed its check: {'; '.join(rows[:5])}")
    finally:
        dest.close()
    _fsync_file(tmp)


def backup_database(source: Path, dest: Path) -> BackupResult:
    """Copy the live database ``source`` to ``dest`` (consistent, atomic, durable)."""
    source, dest = Path(source), Path(dest)
    if not source.exists():
        raise LedgerError(f"{source}: no database file to back up")
    if dest.is_dir():
        dest = dest / f"{source.stem}-{time.strftime('%Y%m%dT%H%M%S')}.db"
    elif not dest.parent.is_dir():
        raise LedgerError(f"{dest.parent}: no such directory; create it first (0750) or "
                          "give an existing directory")
    elif not dest.exists() and dest.suffix not in BACKUP_SUFFIXES:
        raise LedgerError(f"{dest}: no such directory; give an existing directory, or a "
                          f"file name ending in {' or '.join(BACKUP_SUFFIXES)}")
    if dest.resolve() == source.resolve():
        raise LedgerError("the backup path is the database itself; choose another path")
    tmp = dest.with_name(f".{dest.name}.tmp")
    started = time.monotonic()
    conn = connect(source, readonly=True)
    try:
        _copy_consistent(conn, tmp)
    except sqlite3.Error as exc:
        _remove_quietly(tmp)
        raise LedgerError(f"backup of {source} failed: {exc}") from exc
    except BaseException:
        _remove_quietly(tmp)
        raise
    finally:
        conn.close()
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)
    check = connect(dest, readonly=True)
    try:
        store_id = _meta(check, "store_id")
        epochs = _epochs(check)
    finally:
        check.close()
    return BackupResult(
        source=str(source), path=str(dest), bytes=_file_size(dest), store_id=store_id,
        epoch=epochs[-1].epoch if epochs else None,
        last_seq=epochs[-1].last_seq if epochs else 0,
        seconds=round(time.monotonic() - started, 3),
    )


def _aside_name(path: Path) -> Path:
    aside = path.with_name(path.name + ".pre-restore")
    if not aside.exists():
        return aside
    return path.with_name(f"{path.name}.pre-restore-{time.strftime('%Y%m%dT%H%M%S')}")


def restore_database(backup: Path, target: Path, store_id: str) -> RestoreResult:
    """Replace ``target`` by ``backup`` and start a new epoch (PROTOCOL §4.1).

    Raises :class:`DatabaseLocked` while the daemon runs, :class:`LedgerError` when the
    backup is damaged, too new, or belongs to another store. Nothing is changed then.
    """
    backup, target = Path(backup), Path(target)
    if is_locked(target):
        raise DatabaseLocked(
            f"{target} is in use by the running agent; stop it first "
            "(systemctl stop edge-agent), then restore"
        )
    if not backup.is_file():
        raise LedgerError(f"{backup}: no such backup file")
    if target.exists() and backup.resolve() == target.resolve():
        raise LedgerError("the backup is the database itself")
    check = check_database(backup, full=True)
    if check.schema_version > check.supported_version:
        raise SchemaTooNew(f"{backup}: {'; '.join(check.problems)}")
    if not check.ok:
        raise DatabaseCorrupt(f"{backup} is not a usable backup: {'; '.join(check.problems)}")
    if check.store_id != store_id:
        raise LedgerError(
            f"{backup} belongs to store {check.store_id!r}, not {store_id!r}; "
            "restore this store's own backup"
        )
    private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.restore-tmp")
    lock_fd = acquire_lock(target)  # keeps a daemon from starting while files move
    previous: Path | None = None
    try:
        src = connect(backup, readonly=True)
        try:
            _copy_consistent(src, tmp)
        finally:
            src.close()
        if target.exists():
            previous = _aside_name(target)
            os.replace(target, previous)
            wal = Path(f"{target}-wal")
            if wal.exists():
                os.replace(wal, Path(f"{previous}-wal"))
        _remove_quietly(Path(f"{target}-shm"), Path(f"{target}-wal"))
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        _remove_quietly(tmp)
        raise
    finally:
        os.close(lock_fd)

    reason = f"{RESTORE_REASON} {backup.name}"

    def start_epoch(tx: Tx) -> str:
        epoch = tx.new_epoch(RESTORE_REASON)
        tx.set_meta("resync_needed", "1")
        tx.set_meta("resync_reason", reason)
        return epoch

    ledger = Ledger.open(target, store_id)
    try:
        new_epoch = ledger.write_blocking(start_epoch)
    finally:
        ledger.close()
    return RestoreResult(
        path=str(target), backup=str(backup), previous=str(previous) if previous else None,
        store_id=store_id, restored_epochs=check.epochs, new_epoch=new_epoch,
    )


def vacuum_database(path: Path) -> VacuumResult:
    """Rebuild the file to return free pages to the disk. Refuses while the daemon runs."""
    path = Path(path)
    if not path.exists():
        raise LedgerError(f"{path}: no database file")
    if is_locked(path):
        raise DatabaseLocked(
            f"{path} is in use by the running agent; stop it first (systemctl stop edge-agent)"
        )
    lock_fd = acquire_lock(path)
    try:
        before = _file_size(path) + _file_size(Path(f"{path}-wal"))
        conn = connect(path)
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise LedgerError(f"vacuum of {path} failed: {exc}") from exc
        finally:
            conn.close()
        after = _file_size(path) + _file_size(Path(f"{path}-wal"))
    finally:
        os.close(lock_fd)
    return VacuumResult(str(path), before, after)
