"""A destroyed pseudonym key leaves every file of the ledger (issue 20, items 6-7).

The files are read byte for byte (``ledger.db``, ``-wal``, ``-shm``) for the key:
- ``[visitors] enabled = false`` on a real ``edge-agent run``: after the agent says the
  key is destroyed, and after a clean shutdown, its bytes are nowhere;
- a rotation while a reader holds an old snapshot: the checkpoint is busy, the engine
  says so (figure, warning), keeps the key pending, and destroys it once the reader is
  gone; only then are the bytes gone from every file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from edge_agent.ledger import Ledger
from edge_agent.services import AgentServices
from edge_agent.visitors.engine import VisitorsEngine
from edge_agent.visitors.shred import RETRY_MAX_S, files_of, found_in_files
from tests.edge_agent.cli.conftest import write_config
from tests.edge_agent.visitors.conftest import Clock, make_config

ROOT = Path(__file__).resolve().parents[3]
# delete the key as the engine does (zeroed, secure_delete), commit, and die without the
# checkpoint a clean close would run
CRASH_AFTER_DELETE = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA secure_delete = ON")
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE visitor_keys SET key = zeroblob(length(key))")
conn.execute("DELETE FROM visitor_keys")
conn.execute("COMMIT")
os._exit(0)
"""


def keys_in(db: Path) -> list[bytes]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return [bytes(r[0]) for r in conn.execute("SELECT key FROM visitor_keys")]
    except sqlite3.OperationalError:
        return []  # not migrated yet
    finally:
        conn.close()


def raw_hits(db: Path, secret: bytes) -> list[str]:
    """Independent of the engine's own check: plain reads of every file."""
    return [p.name for p in files_of(db) if p.exists() and secret in p.read_bytes()]


def run_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "EDGE_AGENT_CONFIG": str(config)}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "edge_agent", "run"], env=env,
                                cwd=ROOT, stdout=out, stderr=out)


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(60) == 0


def wait(pred: object, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while not pred():  # type: ignore[operator]
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{what}: {log.read_text()[-3000:]}"
        time.sleep(0.1)


def test_disabling_visitors_takes_the_key_off_the_disk(tmp_path: Path) -> None:
    db = tmp_path / "state" / "ledger.db"
    log = tmp_path / "agent.log"
    config = write_config(tmp_path, extra="[visitors]\nenabled = true\n")
    proc = run_agent(config, log)
    wait(lambda: bool(db.exists() and keys_in(db)), "no key created", proc, log)
    (key,) = keys_in(db)
    stop(proc)
    assert raw_hits(db, key), "the key should be on disk while visitors are on"

    config.write_text(config.read_text().replace("enabled = true", "enabled = false"))
    proc = run_agent(config, log)
    wait(lambda: "key destroyed" in log.read_text(), "never said destroyed", proc, log)
    assert keys_in(db) == []
    assert raw_hits(db, key) == []  # already while it runs, once it said so
    stop(proc)
    assert raw_hits(db, key) == []

    # a run that deleted the key and died before its checkpoint: the deletion is in the
    # WAL, the key still in ledger.db; a start with visitors disabled checkpoints at once
    config.write_text(config.read_text().replace("enabled = false", "enabled = true"))
    proc = run_agent(config, log)
    wait(lambda: bool(keys_in(db)), "no second key", proc, log)
    (key2,) = keys_in(db)
    stop(proc)
    subprocess.run([sys.executable, "-c", CRASH_AFTER_DELETE, str(db)], check=True)
    assert keys_in(db) == []
    assert raw_hits(db, key2), "the simulated crash should leave the key on disk"
    config.write_text(config.read_text().replace("enabled = true", "enabled = false"))
    proc = run_agent(config, log)
    wait(lambda: "no deleted key left" in log.read_text(), "no checkpoint at start", proc, log)
    assert raw_hits(db, key2) == []
    stop(proc)
    assert raw_hits(db, key2) == []


async def test_busy_checkpoint_is_retried_until_the_key_is_gone(tmp_path: Path) -> None:
    clock = Clock(1795600800.0)
    config = make_config(tmp_path, devices=[], key_rotation_s=86400)
    db = Path(config.database.path)
    ledger = Ledger.open(db, config.store.id)
    services = AgentServices(config=config, ledger=ledger)
    engine = VisitorsEngine(services, clock=clock, disk_free=lambda _p: 10**12)
    try:
        await engine.start()
        (old,) = keys_in(db)
        assert found_in_files(db, [old])  # the check finds a key that is there

        reader = sqlite3.connect(db, isolation_level=None)  # a backup, a long report...
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM visitor_keys").fetchone()
        clock.advance(86401)
        await engine.tick()  # rotates; the checkpoint is busy
        figures = engine.figures()
        assert figures["key_rotations"] == 1
        assert figures["key_checkpoint_busy"] >= 1
        assert figures["keys_pending_destruction"] == 1
        assert figures["keys_destroyed"] == 0
        assert raw_hits(db, old), "busy checkpoint: the old key must still be reported"
        clock.advance(RETRY_MAX_S)
        await engine.tick()  # still busy: retried, counted again
        assert engine.figures()["key_checkpoint_busy"] >= 2
        assert engine.figures()["keys_pending_destruction"] == 1

        reader.execute("ROLLBACK")
        reader.close()
        deadline = time.monotonic() + 60
        while engine.figures()["keys_pending_destruction"]:
            assert time.monotonic() < deadline, engine.figures()
            clock.advance(RETRY_MAX_S)
            await engine.tick()
        assert engine.figures()["keys_destroyed"] == 1
        assert raw_hits(db, old) == []
        (new,) = keys_in(db)
        assert new != old
    finally:
        await engine.flush(final=True)
        ledger.close()
    assert raw_hits(db, old) == []
