"""Every file the agent creates is 0640 or stricter and every directory 0750 or stricter,
whatever the umask it was started with (issue 20, item 2).

Real processes started under ``umask 022`` (the usual interactive default): ``edge-agent
init`` (the README's manual set-up), ``edge-agent run`` (ledger, WAL, SHM, lock file) and
``edge-agent db backup`` (the backup; and a refusal for a directory that does not exist).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.edge_agent.cli.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]
FILE_LIMIT, DIR_LIMIT = 0o640, 0o750


def run_umask_022(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", 'umask 022 && exec "$@"', "sh", sys.executable,
                           "-m", "edge_agent", *args], capture_output=True, text=True,
                          cwd=ROOT, check=False, timeout=120, **kwargs)  # type: ignore[call-overload]


def too_open(root: Path) -> list[str]:
    """Paths below ``root`` (created by the agent) with a mode beyond 0640 / 0750."""
    bad = []
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            if mode & ~DIR_LIMIT:
                bad.append(f"{path} {mode:o}")
        elif stat.S_ISREG(st.st_mode) and mode & ~FILE_LIMIT:
            bad.append(f"{path} {mode:o}")
    return bad


def test_init_creates_a_private_state_directory_and_database(tmp_path: Path) -> None:
    state = tmp_path / "var" / "lib" / "edge-agent"
    etc = tmp_path / "etc" / "edge-agent"
    done = run_umask_022("--config", str(etc / "agent.toml"), "init", "--store-id", "S001",
                         "--db-path", str(state / "ledger.db"),
                         "--socket", str(tmp_path / "run" / "api.sock"))
    assert (state / "ledger.db").is_file(), done.stderr
    assert too_open(tmp_path / "var") == []
    assert too_open(tmp_path / "etc") == []


def test_running_agent_and_backups_are_private(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    state = tmp_path / "state"
    env = {**os.environ, "EDGE_AGENT_CONFIG": str(config)}
    proc = subprocess.Popen(["sh", "-c", 'umask 022 && exec "$@"', "sh", sys.executable, "-m",
                             "edge_agent", "run"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (state / "ledger.db-wal").exists() or not (tmp_path / "api.sock").exists():
            assert proc.poll() is None, "the agent exited"
            assert time.monotonic() < deadline, "the agent never opened its ledger"
            time.sleep(0.05)
        names = {p.name for p in state.iterdir()}
        assert {"ledger.db", "ledger.db-wal", "ledger.db-shm", "ledger.db.lock"} <= names
        assert too_open(state) == []

        backups = tmp_path / "backups"
        backups.mkdir(mode=0o750)
        into_dir = run_umask_022("--config", str(config), "db", "backup", str(backups))
        assert into_dir.returncode == 0, into_dir.stderr
        named = run_umask_022("--config", str(config), "db", "backup", str(backups / "b.db"))
        assert named.returncode == 0, named.stderr
        assert len(list(backups.iterdir())) == 2
        assert too_open(backups) == []
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert too_open(state) == []


def test_backup_into_a_missing_directory_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    from edge_agent.ledger import Ledger  # noqa: PLC0415 - seed the ledger in-process

    with Ledger.open(tmp_path / "state" / "ledger.db", "S001"):
        pass
    for target in (tmp_path / "no-such-dir", tmp_path / "missing" / "b.db"):
        refused = run_umask_022("--config", str(config), "db", "backup", str(target))
        assert refused.returncode != 0
        assert "no such directory" in refused.stderr
        assert not target.exists()
        assert not target.parent.exists() or target.parent == tmp_path
