"""SIGKILL of the real agent process in the middle of a pick: every scan it answered is
still there after the restart, and the pick finishes with one ``order.picked``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_agent.ledger import Ledger
from tests.edge_agent.orders.helpers import assign, stock_in
from tests.edge_agent.retail.seed import event_payloads, open_ledger
from tests.helpers.ports import free_port
from tests.helpers.processes import REPO, agent_config_text, wait_until

A_SCAN = "5901234123457"


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ea-crash-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Agent:
    """``edge-agent run`` with no broker and no central (offline-first)."""

    def __init__(self, workdir: Path) -> None:
        self.socket = workdir / "api.sock"
        self.config = workdir / "agent.toml"
        token = workdir / "token"
        token.write_text("tok")
        self.config.write_text(agent_config_text(
            store="S001", db=workdir / "ledger.db",
            broker_url=f"mqtt://127.0.0.1:{free_port()}",
            central_url=f"http://127.0.0.1:{free_port()}", token_file=token,
            api_socket=self.socket))
        self.log = workdir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.keys = 0

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "--config", str(self.config), "run"],
                stdout=log, stderr=log, cwd=REPO)
        wait_until(self.up, 60, "agent API up")

    def up(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with self.client() as c:
                return c.get("/v1/status").status_code == 200
        except httpx.HTTPError:
            return False

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)),
                            base_url="http://agent", timeout=30)

    def post(self, path: str, body: object = None) -> httpx.Response:
        self.keys += 1
        with self.client() as c:
            return c.post(path, json=body, headers={"Idempotency-Key": f"k{self.keys}"})

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def test_sigkill_mid_pick_keeps_every_answered_scan(workdir: Path) -> None:
    ledger = open_ledger(workdir / "ledger.db")
    stock_in(ledger, {"A-100": 5})
    assign(ledger, "W1", {"A-100": 3})
    ledger.close()
    agent = Agent(workdir)
    try:
        agent.start()
        assert agent.post("/v1/orders/W1/accept").status_code == 201
        assert agent.post("/v1/orders/W1/pick", {"code": A_SCAN, "qty": 2}).status_code == 201
        agent.kill()
        agent.start()
        with agent.client() as c:
            order = c.get("/v1/orders/W1").json()
        assert (order["status"], order["lines"][0]["picked"]) == ("picking", 2)
        over = agent.post("/v1/orders/W1/pick", {"code": A_SCAN, "qty": 2})
        assert (over.status_code, over.json()["code"]) == (409, "pick_exceeds_order")
        done = agent.post("/v1/orders/W1/pick", {"code": A_SCAN})
        assert done.json()["status"] == "picked"
    finally:
        agent.stop()
    with Ledger.open(workdir / "ledger.db", "S001") as reopened:
        types = [e["type"] for e in event_payloads(reopened)]
    assert types.count("order.picked") == 1
    assert types.count("order.accepted") == 1
