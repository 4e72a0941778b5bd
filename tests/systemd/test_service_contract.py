"""What the unit relies on, with the real agent process: Type=notify (READY=1), the
watchdog (WATCHDOG=1 while healthy), STOPPING=1 and exit 0 on SIGTERM; and the CLI's
refusals while that process holds the database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge_agent.cli.conftest import invoke, write_config

ROOT = Path(__file__).resolve().parents[2]


def recv_until(sock: socket.socket, wanted: str, deadline: float) -> list[dict[str, str]]:
    got: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        fields = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
        got.append(fields)
        if wanted in fields:
            return got
    raise AssertionError(f"no {wanted} from the agent; got {got}")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], socket.socket, Path]]:
    config = write_config(tmp_path)
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "1000000",
           "EDGE_AGENT_CONFIG": str(config)}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "run"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc, sock, config
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        sock.close()


def test_ready_watchdog_stopping_and_exit_0(
    agent: tuple[subprocess.Popen[bytes], socket.socket, Path], tmp_path: Path
) -> None:
    proc, sock, config = agent
    got = recv_until(sock, "READY", time.monotonic() + 30)
    assert got[-1]["READY"] == "1"
    assert got[-1]["MAINPID"] == str(proc.pid)
    recv_until(sock, "WATCHDOG", time.monotonic() + 5)

    # while the agent holds the database, the CLI refuses what would fight it
    backup = tmp_path / "b.db"
    assert invoke(config, "db", "backup", str(backup)).exit_code == 0  # online backup is fine
    restore = invoke(config, "db", "restore", str(backup), "--yes")
    assert restore.exit_code == 1
    assert "stop it first" in restore.stderr
    assert invoke(config, "db", "vacuum").exit_code == 1
    status = invoke(config, "status", "--json")
    assert status.exit_code == 0, status.output

    os.kill(proc.pid, signal.SIGTERM)
    recv_until(sock, "STOPPING", time.monotonic() + 20)
    assert proc.wait(20) == 0
