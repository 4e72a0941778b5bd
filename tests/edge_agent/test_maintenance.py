"""db check / backup / restore / vacuum against real SQLite files and a real writer process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge_agent.errors import DatabaseCorrupt, DatabaseLocked, LedgerError
from edge_agent.ledger import Ledger, Tx, read_epochs, read_events_after
from edge_agent.ledger.schema import connect
from edge_agent.maintenance import (
    RESTORE_REASON,
    backup_database,
    check_database,
    restore_database,
    vacuum_database,
)

STORE = "S001"

WRITER = textwrap.dedent(
    """
    import sys
    from edge_agent.ledger import Ledger

    def op(tx):
        return tx.append("adjustment",
                         {"reason": "found", "lines": [{"sku": "A-1", "qty": 1}]},
                         stock=[("A-1", 1)]).seq

    ledger = Ledger.open(sys.argv[1], "S001")
    print("ready", flush=True)
    while True:
        for _ in range(20):
            ledger.submit(op)
        ledger.write_blocking(op)
    """
)


def _found(tx: Tx) -> int:
    return tx.append("adjustment", {"reason": "found", "lines": [{"sku": "A-1", "qty": 1}]},
                     stock=[("A-1", 1)]).seq


def make_db(path: Path, events: int, *, acked: int = 0) -> str:
    with Ledger.open(path, STORE) as ledger:
        for _ in range(events):
            ledger.write_blocking(_found)
        epoch = ledger.current_epoch
        if acked:
            ledger.write_blocking(lambda tx: tx.set_acked(epoch, acked))
    return epoch


def start_writer(db: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def assert_consistent(path: Path) -> int:
    """quick_check ok, seqs 1..n without gaps, stock equals the sum of the events' deltas."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY id")]
        assert seqs == list(range(1, len(seqs) + 1))
        row = conn.execute("SELECT on_hand FROM stock WHERE sku = 'A-1'").fetchone()
        assert (row[0] if row else 0) == len(seqs)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()
    return len(seqs)


def test_backup_while_a_writer_process_writes(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    make_db(db, 1)
    writer = start_writer(db)
    try:
        sizes = []
        for i in range(3):
            time.sleep(0.3)
            result = backup_database(db, tmp_path / f"backup-{i}.db")
            assert result.store_id == STORE
            n = assert_consistent(Path(result.path))
            assert n == result.last_seq
            sizes.append(n)
        assert sizes[0] > 1
        assert sizes == sorted(sizes)
        assert sizes[-1] > sizes[0]
    finally:
        stop(writer)
    assert not list(tmp_path.glob(".*.tmp"))


def test_backup_into_a_directory_and_not_onto_itself(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    make_db(db, 3)
    out = tmp_path / "backups"
    out.mkdir()
    result = backup_database(db, out)
    assert Path(result.path).parent == out
    assert assert_consistent(Path(result.path)) == 3
    with pytest.raises(LedgerError, match="database itself"):
        backup_database(db, db)


def test_restore_refused_while_the_daemon_holds_the_database(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    make_db(db, 2)
    backup = Path(backup_database(db, tmp_path / "b.db").path)
    writer = start_writer(db)
    try:
        before = db.stat().st_ino
        with pytest.raises(DatabaseLocked, match="stop it first"):
            restore_database(backup, db, STORE)
        with pytest.raises(DatabaseLocked):
            vacuum_database(db)
        assert db.stat().st_ino == before
        assert not db.with_name("ledger.db.pre-restore").exists()
    finally:
        stop(writer)


def test_restore_starts_a_new_epoch_and_keeps_old_events_under_the_old_one(
    tmp_path: Path,
) -> None:
    db = tmp_path / "ledger.db"
    old_epoch = make_db(db, 5, acked=2)
    backup = Path(backup_database(db, tmp_path / "b.db").path)
    with Ledger.open(db, STORE) as ledger:  # three more events the backup does not hold
        for _ in range(3):
            ledger.write_blocking(_found)

    result = restore_database(backup, db, STORE)

    assert result.previous is not None
    aside = Path(result.previous)
    assert aside.name == "ledger.db.pre-restore"
    conn = connect(aside, readonly=True)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 8
    conn.close()

    conn = connect(db, readonly=True)
    try:
        epochs = read_epochs(conn)
        assert [e.epoch for e in epochs] == [old_epoch, result.new_epoch]
        assert epochs[0].acked_seq == 2
        reason = conn.execute("SELECT reason FROM epochs WHERE ordinal = 2").fetchone()[0]
        assert reason == RESTORE_REASON
        # the backup's unacknowledged events are still there to deliver, under the old epoch
        pending = read_events_after(conn, old_epoch, 2, 100, 1 << 20)
        assert [e.seq for e in pending] == [3, 4, 5]
        assert json.loads(pending[0].payload)["seq"] == 3
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        assert meta["resync_needed"] == "1"
        assert "restored from backup" in meta["resync_reason"]
    finally:
        conn.close()

    with Ledger.open(db, STORE) as ledger:  # the next fact is seq 1 of the new epoch
        assert ledger.current_epoch == result.new_epoch
        assert ledger.write_blocking(_found) == 1


def test_restore_refuses_another_stores_backup_and_a_damaged_file(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    make_db(db, 1)
    other = tmp_path / "other.db"
    with Ledger.open(other, "S999") as ledger:
        ledger.write_blocking(_found)
    with pytest.raises(LedgerError, match="belongs to store 'S999'"):
        restore_database(other, db, STORE)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    with pytest.raises(DatabaseCorrupt):
        restore_database(garbage, db, STORE)
    assert not db.with_name("ledger.db.pre-restore").exists()
    assert check_database(db).ok


def test_restore_keeps_an_earlier_pre_restore_file(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    make_db(db, 1)
    backup = Path(backup_database(db, tmp_path / "b.db").path)
    first = restore_database(backup, db, STORE)
    second = restore_database(backup, db, STORE)
    assert first.previous != second.previous
    assert first.previous is not None
    assert Path(first.previous).exists()
    assert second.previous is not None
    assert Path(second.previous).exists()


def test_check_reports_a_damaged_database(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    make_db(db, 50)
    good = check_database(db, full=True)
    assert good.ok
    assert good.mode == "integrity_check"
    assert good.store_id == STORE
    assert good.epochs[-1].last_seq == 50
    # overwrite a page in the middle of the file
    data = bytearray(db.read_bytes())
    page = 4096
    data[2 * page : 3 * page] = os.urandom(page)
    db.write_bytes(bytes(data))
    bad = check_database(db)
    assert not bad.ok
    assert bad.problems


def test_vacuum_shrinks_after_deletes(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    make_db(db, 2000)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM events WHERE seq > 10")
    conn.commit()
    conn.close()
    result = vacuum_database(db)
    assert result.bytes_after < result.bytes_before
    assert check_database(db).ok
