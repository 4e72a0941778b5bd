"""Real store agents (``python -m edge_agent run``) beside the real central, for the
omnichannel end-to-end tests: each agent's local API is reached over its Unix socket."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.processes import REPO, CentralProcess, agent_config_text, wait_until

MUG = {"sku": "MUG-1", "name": "Mug", "gtins": ["4006381333931"], "price": "12.90",
       "currency": "EUR", "uom": "unit", "active": True}
MUG_SCAN = "4006381333931"


class StoreAgent:
    """One store's agent daemon, started and stopped by PID."""

    def __init__(self, workdir: Path, store: str, broker_url: str,
                 central: CentralProcess) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.workdir = workdir
        self.socket = workdir / "api.sock"
        self.config = workdir / "agent.toml"
        text = agent_config_text(
            store=store, db=workdir / "ledger.db", broker_url=broker_url,
            central_url=central.url, token_file=central.token_for(store),
            api_socket=self.socket)
        # Central counts a store as heard from by its event batches and live health
        # messages: a running store reports its health every 2 s here, well inside the
        # tests' stale_after, so only a stopped or cut-off store goes silent.
        assert "health_interval_s = 30" in text
        self.config.write_text(text.replace("health_interval_s = 30", "health_interval_s = 2"))
        self.log = workdir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._keys = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "--config", str(self.config), "run"],
                stdout=log, stderr=log, cwd=REPO)
        wait_until(self.online, 60, f"{self.store} agent online")

    def online(self) -> bool:
        if not self.socket.exists():  # (httpcore leaks the socket of a failed uds connect)
            return False
        try:
            status = self.get("/v1/status")
        except (httpx.HTTPError, OSError):
            return False
        return bool(status.get("broker", {}).get("connected"))

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)),
                            base_url="http://agent", timeout=30)

    def get(self, path: str, **params: Any) -> Any:
        with self.client() as c:
            r = c.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: Any = None) -> httpx.Response:
        self._keys += 1
        with self.client() as c:
            return c.post(path, json=body,
                          headers={"Idempotency-Key": f"{self.store}-{self._keys}"})

    def step(self, path: str, body: Any = None) -> dict[str, Any]:
        r = self.post(path, body)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def stock(self, sku: str) -> tuple[int, int]:
        item = self.get(f"/v1/stock/{sku}")
        return int(item["on_hand"]), int(item["reserved"])

    def has_stock(self, sku: str, want: tuple[int, int]) -> bool:
        return self.stock(sku) == want

    def stop(self) -> None:
        """SIGTERM (the agent publishes its offline status), SIGKILL if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
