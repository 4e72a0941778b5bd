"""The agent's API listeners close slow-header connections (issue 20, item 4): a real
``edge-agent run`` with its loopback TCP listener and its Unix socket; twenty connections
that drip their request head are closed, and a normal request is served meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.edge_agent.cli.conftest import write_config
from tests.helpers.ports import free_port
from tests.helpers.slow_http import hold_slow_heads

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "tcp-api-token-for-tests"  # noqa: S105 - test-only


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    token_file = tmp_path / "api-token"
    token_file.write_text(TOKEN)
    config = write_config(tmp_path, extra=f'[api.tcp]\nport = {port}\n'
                                          f'token_file = "{token_file}"\n')
    env = {**os.environ, "EDGE_AGENT_CONFIG": str(config)}
    proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "run"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the agent exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the agent's TCP listener never answered"
            time.sleep(0.1)
        yield port
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_tcp_listener_closes_slow_header_connections(agent: int) -> None:
    def still_serves() -> None:
        r = httpx.get(f"http://127.0.0.1:{agent}/v1/status", timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200

    hold_slow_heads("127.0.0.1", agent, meanwhile=still_serves)
    still_serves()
