"""``make demo``: a whole store on one machine, with simulated devices.

Starts, under ``demo-state/``:
- the device simulator: two scanners, a door counter and an EM4100 reader on
  pseudo-terminals speaking their real wire formats;
- a private mosquitto and the reference central, when mosquitto is installed (else the
  agent runs offline and queues — the point of an offline-first store);
- the agent itself (``edge-agent run``) on an embedded SQLite ledger;
and then plays a shop day: shoppers walk in, items are scanned and checked out,
deliveries received in the back room, while it prints what the store and central see.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from drivers.simulator import Simulator

REPO = Path(__file__).resolve().parent.parent
DEMO_CATALOG = [
    {"sku": "COFFEE-1KG", "name": "Coffee beans 1 kg", "gtins": ["5901234123457"],
     "price": "14.90", "currency": "EUR", "uom": "unit", "active": True},
    {"sku": "TEA-GREEN", "name": "Green tea 100 g", "gtins": ["4006381333931"],
     "price": "4.50", "currency": "EUR", "uom": "unit", "active": True},
    {"sku": "SODA-330", "name": "Soda can 330 ml", "gtins": ["036000291452"],
     "price": "1.20", "currency": "EUR", "uom": "unit", "active": True},
    {"sku": "GUM-MINT", "name": "Mint gum", "gtins": ["96385074"],
     "price": "0.99", "currency": "EUR", "uom": "unit", "active": True},
]
SCANNABLE = [item["gtins"][0] for item in DEMO_CATALOG]  # type: ignore[index]
TAGS = ["0A1B2C3D4E", "1122334455", "00FFEE9988"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def wait_port(port: int, within_s: float = 15.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        await asyncio.sleep(0.1)
    return False


class Demo:
    def __init__(self, state: Path, duration: float | None) -> None:
        self.state = state.resolve()
        self.duration = duration
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.broker_port: int | None = None
        self.central_port = free_port()
        self.logs = self.state / "logs"

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603 - our own programs
        log.close()
        self.children.append((name, proc))
        return proc

    # -- parts ---------------------------------------------------------------------
    async def start_broker(self) -> None:
        # Debian puts the broker in /usr/sbin, which a user's PATH may lack.
        mosquitto = shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if mosquitto is None:
            print("mosquitto is not installed: the agent runs offline and queues "
                  "(sudo apt-get install mosquitto to see the whole loop)")
            return
        port = free_port()
        conf = self.state / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                        "set_tcp_nodelay true\npersistence false\n")
        self.spawn("mosquitto", [mosquitto, "-c", str(conf)])
        if await wait_port(port):
            self.broker_port = port
            print(f"broker: a private mosquitto on 127.0.0.1:{port}")
        else:
            print("mosquitto did not start (see demo-state/logs/mosquitto.log); running offline")

    def central_headers(self) -> dict[str, str]:
        """The operator token edge-central generated beside its database at first start."""
        path = self.state / "admin.token"
        return {"Authorization": f"Bearer {path.read_text().strip()}"} if path.exists() else {}

    async def start_central(self, token: str) -> None:
        if self.broker_port is None:
            return
        tokens = self.state / "store-tokens"
        tokens.mkdir(exist_ok=True)
        (tokens / "DEMO1.token").write_text(token)
        conf = self.state / "central.toml"
        conf.write_text(
            f'root = "retail"\ndatabase_url = "sqlite:///{self.state / "central.db"}"\n'
            "resend_after = 5\n\n"
            f'[broker]\nurl = "mqtt://127.0.0.1:{self.broker_port}"\nusername = "central"\n'
            'client_id = "edge-central-demo"\n\n'
            f'[http]\nlisten = "127.0.0.1:{self.central_port}"\nstore_tokens_dir = "{tokens}"\n'
        )
        self.spawn("central", [sys.executable, "-m", "central", "serve", "--config",
                               str(conf)])
        if not await wait_port(self.central_port):
            print("central did not start (see demo-state/logs/central.log)")
            return
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.central_port}",
                                     headers=self.central_headers()) as http:
            await http.post("/v1/stores/DEMO1/catalog", json={"items": DEMO_CATALOG})
            await http.post("/v1/stores/DEMO1/adjust", json={
                "reason": "replenishment", "ref": "DEMO-OPENING",
                "lines": [{"sku": item["sku"], "delta": 20} for item in DEMO_CATALOG]})
        print(f"central: edge-central on http://127.0.0.1:{self.central_port}, demo catalog "
              "and opening stock issued as commands")

    def agent_config(self) -> Path:
        text = (REPO / "config" / "demo.toml").read_text()
        text = text.replace('"demo-state/', f'"{self.state}/')
        if self.broker_port is not None:
            text = text.replace("mqtt://127.0.0.1:1883", f"mqtt://127.0.0.1:{self.broker_port}")
        text = text.replace("http://127.0.0.1:8720", f"http://127.0.0.1:{self.central_port}")
        path = self.state / "agent.toml"
        path.write_text(text)
        return path

    # -- the shop day ------------------------------------------------------------------------
    async def shop(self, sim: Simulator) -> None:
        rng = __import__("random").Random(42)
        tick = 0
        while True:
            tick += 1
            sim.door("door-main", "in")
            tag = TAGS[tick % len(TAGS)]
            sim.tag_present("entrance-rfid", tag)
            for _ in range(rng.randint(1, 3)):
                sim.scan("till-1", rng.choice(SCANNABLE))
                await asyncio.sleep(0.3)
            sim.scan("till-1", "CTL-CHECKOUT")
            if tick % 4 == 0:
                for _ in range(3):
                    sim.scan("backroom", rng.choice(SCANNABLE))
                    await asyncio.sleep(0.2)
                sim.scan("backroom", "CTL-CLOSE")
            if tick % 7 == 0:
                sim.corrupt("till-1")  # a garbled frame: counted, never a crash
            await asyncio.sleep(2.0)
            sim.door("door-main", "out")
            sim.tag_gone("entrance-rfid", tag)

    async def report(self, socket_path: Path) -> None:
        transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
        async with httpx.AsyncClient(transport=transport, base_url="http://agent",
                                     timeout=5) as agent, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.central_port}",
                                  headers=self.central_headers(), timeout=5) as central:
            while True:
                await asyncio.sleep(5)
                line = await self._agent_line(agent)
                if self.broker_port is not None:
                    line += " | " + await self._central_line(central)
                print(line, flush=True)

    async def _agent_line(self, agent: httpx.AsyncClient) -> str:
        try:
            status: dict[str, Any] = (await agent.get("/v1/status")).json()
        except (httpx.HTTPError, ValueError):
            return "agent: starting…"
        outbox = status.get("outbox", {})
        broker = status.get("broker", {})
        devices = status.get("devices", {})
        return (f"store: seq {status.get('last_seq')} pending {outbox.get('pending')} "
                f"{'online' if broker.get('connected') else 'offline'} "
                f"cseq {status.get('applied_cseq')} devices "
                f"{devices.get('connected')}/{devices.get('total')}")

    async def _central_line(self, central: httpx.AsyncClient) -> str:
        try:
            body = (await central.get("/v1/stores/DEMO1/stock")).json()
        except (httpx.HTTPError, ValueError):
            return "central: starting…"
        rows = body.get("stock", body) if isinstance(body, dict) else body
        shown = ", ".join(f"{r.get('sku')}={r.get('on_hand')}" for r in rows[:4]
                          if isinstance(r, dict))
        return f"central stock: {shown or '—'}"

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> int:
        self.state.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        token_file = self.state / "central-token"
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(24))
            token_file.chmod(0o600)
        async with Simulator(self.state / "dev") as sim:
            sim.add_scanner("till-1", suffix="CR")
            sim.add_scanner("backroom", suffix="CRLF")
            sim.add_door("door-main")
            sim.add_em4100("entrance-rfid")
            await sim.start()
            await self.start_broker()
            await self.start_central(token_file.read_text().strip())
            config = self.agent_config()
            self.spawn("agent", [sys.executable, "-m", "edge_agent", "--config", str(config),
                                 "run"])
            print(f"agent: edge-agent run --config {config} (logs in {self.logs}/agent.log)")
            print("playing a shop day; Ctrl-C to stop\n")
            async with asyncio.TaskGroup() as tg:
                shop = tg.create_task(self.shop(sim), name="demo.shop")
                report = tg.create_task(self.report(self.state / "api.sock"), name="demo.report")
                if self.duration is not None:
                    await asyncio.sleep(self.duration)
                    shop.cancel()
                    report.cancel()
        return 0

    def stop_children(self) -> None:
        """Agent first (it publishes its offline status), then central, then the broker."""
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-agent-demo", description=__doc__)
    parser.add_argument("--state-dir", default=os.environ.get("EDGE_AGENT_DEMO_DIR",
                                                              "demo-state"))
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: until Ctrl-C)")
    args = parser.parse_args(argv)
    demo = Demo(Path(args.state_dir), args.duration)
    try:
        return asyncio.run(demo.run())
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        demo.stop_children()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
