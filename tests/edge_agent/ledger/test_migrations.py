"""Migrations run one transaction each: a kill mid-way leaves the old or the new version."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.errors import LedgerError, SchemaTooNew
from edge_agent.ledger import Ledger
from edge_agent.ledger.migrations import Migration, discover
from edge_agent.ledger.schema import connect, migrate, schema_version

REPO = Path(__file__).resolve().parents[3]

HEAVY_SQL = """
CREATE TABLE heavy (id INTEGER PRIMARY KEY, pad TEXT NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600000)
INSERT INTO heavy (id, pad) SELECT i, printf('%040d', i) FROM n;
CREATE INDEX heavy_pad ON heavy (pad);
ALTER TABLE stock ADD COLUMN heavy_note TEXT;
"""

CHILD = """
import sys
from pathlib import Path
from edge_agent.ledger.migrations import Migration, discover
from edge_agent.ledger.schema import connect, migrate
path = Path(sys.argv[1])
conn = connect(path)
migrations = discover()
migrations.append(Migration(migrations[-1].version + 1, "m_heavy", sys.argv[2]))
print("start", flush=True)
migrate(conn, path, migrations)
print("done", flush=True)
"""


def test_a_kill_during_a_migration_leaves_old_or_new_version(tmp_path: Path) -> None:
    rng = random.Random(7)
    latest = discover()[-1].version
    outcomes = set()
    for attempt in range(6):
        path = tmp_path / f"l{attempt}.db"
        Ledger.open(path, "S1").close()
        with subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), HEAVY_SQL], cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        ) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "start"
            time.sleep(rng.uniform(0.0, 1.2) if attempt else 0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            columns = {r[1] for r in conn.execute("PRAGMA table_info(stock)")}
            if version == latest:
                assert "heavy" not in tables
                assert "heavy_note" not in columns
                outcomes.add("old")
                Ledger.open(path, "S1").close()  # the agent opens it as before
            else:
                assert version == latest + 1
                assert conn.execute("SELECT count(*) FROM heavy").fetchone()[0] == 600000
                assert "heavy_note" in columns
                outcomes.add("new")
                with pytest.raises(SchemaTooNew):  # that version is not shipped
                    Ledger.open(path, "S1")
        finally:
            conn.close()
    assert "old" in outcomes  # the kill did land mid-migration at least once


def test_a_failing_migration_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    Ledger.open(path, "S1").close()
    conn = connect(path)
    migrations = discover()
    version = migrations[-1].version
    broken = [*migrations, Migration(version + 1, "m_broken",
                                     "CREATE TABLE ok_table (x);\nSELECT * FROM no_such_table;")]
    with pytest.raises(LedgerError, match="m_broken"):
        migrate(conn, path, broken)
    assert schema_version(conn) == version
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name='ok_table'"
                        ).fetchone()[0] == 0
    conn.close()


def test_shipped_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in discover()]
    assert versions == list(range(1, len(versions) + 1))
