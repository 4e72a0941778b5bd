"""``make demo``: a whole store on one machine, with simulated devices.

Starts, under ``demo-state/``:
- the device simulator: two scanners, a door counter and an EM4100 reader on
  pseudo-terminals speaking their real wire formats;
- a private mosquitto and the reference central, when mosquitto is installed (else the
  agent runs offline and queues — the point of an offline-first store);
- the agent itself (``edge-agent run``) on an embedded SQLite ledger, seeded on its first
  start with the demo catalog and an opening delivery, so it sells from the first scan
  with or without central;
and then plays a shop day: shoppers walk in, items are scanned and checked out, the back
room receives a delivery when an item runs low and central sends replenishment, while it
tells in plain words what the store and central do (each scan, sale, sync batch and
ack, each command from central). Ports and paths are those of ``config/demo.toml``, so
``edge-agent doctor --config config/demo.toml`` checks the running demo.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from drivers.simulator import Simulator
from edge_agent import demo_day, demo_scenes
from edge_agent.demo_scenes_floor import say
from edge_agent.demo_seed import (
    DEMO_CATALOG,
    OPENING_STOCK,
    STORE,
    seed_ledger,
)

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "config" / "demo.toml"


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range (32768 up): a port from
    ``bind(0)`` may be taken by any program's outgoing connection before our server binds
    it; these never are."""
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randint(10000, 32767)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # a machine with all of them taken: the kernel's choice
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


def _die_with_parent() -> None:
    """In the child: SIGTERM when the demo dies, even by SIGKILL (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Demo:
    def __init__(self, state: Path, duration: float | None, *, broker: bool = True,
                 opening: int = OPENING_STOCK, free_ports: bool = False) -> None:
        self.state = state.resolve()
        self.free_ports = free_ports  # never config/demo.toml's ports (a second demo)
        self.opening = opening
        self.duration = duration
        self.want_broker = broker
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs = self.state / "logs"
        settings = tomllib.loads(DEMO_CONFIG.read_text())
        self.mqtt_port = urlsplit(settings["mqtt"]["url"]).port or 1883
        self.central_port = urlsplit(settings["central"]["url"]).port or 8720
        self.agent_http_port = int(settings["api"]["tcp"]["port"])  # the store page
        self.broker_running = False
        self.central_running = False
        self.config_path = DEMO_CONFIG

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603 - our own programs
                                preexec_fn=_die_with_parent)  # noqa: PLW1509 - prctl only
        log.close()
        self.children.append((name, proc))
        return proc

    # -- parts ---------------------------------------------------------------------
    def choose_ports(self) -> None:
        """config/demo.toml's ports, unless something else holds them (then say so)."""
        if self.free_ports:  # checking a fixed port, then binding it, races another demo
            self.mqtt_port, self.central_port = free_port(), free_port()
            self.agent_http_port = free_port()
            say(f"free ports: broker {self.mqtt_port}, central {self.central_port}, "
                f"store page {self.agent_http_port}")
            return
        if port_open(self.mqtt_port):
            old, self.mqtt_port = self.mqtt_port, free_port()
            say(f"port {old} is taken by another program: the demo broker uses {self.mqtt_port}")
        if port_open(self.central_port):
            old, self.central_port = self.central_port, free_port()
            say(f"port {old} is taken by another program: central uses {self.central_port}")
        self.agent_http_port = demo_scenes.page_port(self.agent_http_port)

    async def start_broker(self) -> None:
        if not self.want_broker:
            say(f"no broker (--offline): the agent queues; start one on 127.0.0.1:"
                f"{self.mqtt_port} and it drains")
            return
        # Debian puts the broker in /usr/sbin, which a user's PATH may lack.
        mosquitto = shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if mosquitto is None:
            say("mosquitto is not installed: the agent runs offline and queues "
                "(sudo apt-get install mosquitto to see the whole loop)")
            return
        conf = self.state / "mosquitto.conf"
        conf.write_text(f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\n"
                        "set_tcp_nodelay true\npersistence false\n")
        self.spawn("mosquitto", [mosquitto, "-c", str(conf)])
        if await wait_port(self.mqtt_port):
            self.broker_running = True
            say(f"broker: a private mosquitto on 127.0.0.1:{self.mqtt_port}")
        else:
            say("mosquitto did not start (see demo-state/logs/mosquitto.log); running offline")

    async def start_central(self, token: str) -> None:
        if not self.broker_running:
            return
        tokens = self.state / "store-tokens"
        tokens.mkdir(exist_ok=True)
        (tokens / f"{STORE}.token").write_text(token)
        conf = self.state / "central.toml"
        conf.write_text(
            f'root = "retail"\ndatabase_url = "sqlite:///{self.state / "central.db"}"\n'
            "resend_after = 5\n\n"
            f'[broker]\nurl = "mqtt://127.0.0.1:{self.mqtt_port}"\nusername = "central"\n'
            'client_id = "edge-central-demo"\n\n'
            f'[http]\nlisten = "127.0.0.1:{self.central_port}"\nstore_tokens_dir = "{tokens}"\n'
            + demo_scenes.CENTRAL_CONFIG
        )
        self.spawn("central", [sys.executable, "-m", "central", "serve", "--config",
                               str(conf)])
        if not await wait_port(self.central_port):
            say("central did not start (see demo-state/logs/central.log)")
            return
        self.central_running = True
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.central_port}",
                                     headers=demo_scenes.central_headers(self.state)) as http:
            # Idempotent: the same catalog again on a restart changes nothing.
            await http.post(f"/v1/stores/{STORE}/catalog", json={"items": DEMO_CATALOG})
        say(f"central: edge-central on http://127.0.0.1:{self.central_port} "
            "(it knows the demo catalog)")

    def agent_config(self) -> Path:
        """config/demo.toml itself when the demo runs with its paths and ports; else a
        copy with this run's, written to the state directory (and said)."""
        text = DEMO_CONFIG.read_text()
        default_state = (REPO / "demo-state").resolve()
        settings = tomllib.loads(text)
        same_ports = (urlsplit(settings["mqtt"]["url"]).port == self.mqtt_port and
                      urlsplit(settings["central"]["url"]).port == self.central_port and
                      settings["api"]["tcp"]["port"] == self.agent_http_port)
        if self.state == default_state and same_ports:
            return DEMO_CONFIG
        text = text.replace('"demo-state/', f'"{self.state}/')
        text = text.replace(settings["mqtt"]["url"], f"mqtt://127.0.0.1:{self.mqtt_port}")
        text = text.replace(settings["central"]["url"], f"http://127.0.0.1:{self.central_port}")
        text = text.replace(f'port = {settings["api"]["tcp"]["port"]}',
                            f"port = {self.agent_http_port}")
        path = self.state / "agent.toml"
        path.write_text(text)
        return path

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None  # noqa: S101 - inside asyncio.run
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, main.cancel)
        self.state.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        token_file = self.state / "central-token"
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(24))
            token_file.chmod(0o600)
        demo_scenes.prepare(self.state)
        if seed_ledger(self.state / "ledger.db", self.opening):
            say(f"new store database: demo catalog ({len(DEMO_CATALOG)} items) and an "
                f"opening delivery of {self.opening} each recorded locally")
        async with Simulator(self.state / "dev") as sim:
            sim.add_scanner("till-1", suffix="CR")
            sim.add_scanner("backroom", suffix="CRLF")
            sim.add_door("door-main")
            sim.add_em4100("entrance-rfid")
            demo_scenes.add_devices(sim)
            await sim.start()
            self.choose_ports()
            await self.start_broker()
            await self.start_central(token_file.read_text().strip())
            self.config_path = self.agent_config()
            failed = False
            try:
                await self._play(sim)
            except* ChildExited:
                failed = True  # said, with its log's last lines, by watch_children
        return 1 if failed else 0

    async def _play(self, sim: Simulator) -> None:
        transport = httpx.AsyncHTTPTransport(uds=str(self.state / "api.sock"))
        async with httpx.AsyncClient(transport=transport, base_url="http://agent",
                                     timeout=5) as agent, asyncio.TaskGroup() as tg:
            listening = asyncio.Event()
            tasks = [tg.create_task(demo_day.narrate_sync(self, listening),
                                    name="demo.narrate_sync")]
            await listening.wait()  # central's first commands are told too
            self.spawn("agent", [sys.executable, "-m", "edge_agent", "--config",
                                 str(self.config_path), "run"])
            say(f"agent: edge-agent run --config {self.config_path} "
                f"(logs in {self.logs}/agent.log)")
            say(f"try:   edge-agent status --config {self.config_path}   "
                f"(and doctor, outbox, devices tail)")
            say("playing a shop day; Ctrl-C to stop\n")
            tasks.append(tg.create_task(self.watch_children(), name="demo.watch_children"))
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    await agent.get("/v1/status")
                    break
                await asyncio.sleep(0.2)
            tasks += [
                tg.create_task(demo_day.narrate_store(agent), name="demo.narrate_store"),
                tg.create_task(demo_day.shop(sim), name="demo.shop"),
                tg.create_task(demo_day.replenish(self, sim, agent), name="demo.replenish"),
                tg.create_task(demo_day.report(agent), name="demo.report"),
                tg.create_task(demo_scenes.play(self, sim, agent), name="demo.scenes"),
            ]
            if self.duration is not None:
                await asyncio.sleep(self.duration)
                say(await demo_day.agent_line(agent))
                for task in tasks:
                    task.cancel()

    async def watch_children(self) -> None:
        """Stop the demo, saying why, when the broker, central or the agent exits."""
        while True:
            for name, proc in self.children:
                code = proc.poll()
                if code is not None:
                    log = self.logs / f"{name}.log"
                    lines = log.read_text(errors="replace").splitlines()[-20:]
                    say(f"{name} exited with code {code}; the last lines of {log}:")
                    for line in lines:
                        say(f"  | {line}")
                    raise ChildExited(name, code)
            await asyncio.sleep(1)

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


class ChildExited(Exception):
    """A process the demo started (broker, central, agent) is gone."""

    def __init__(self, name: str, code: int) -> None:
        super().__init__(f"{name} exited with code {code}")
        self.name = name
        self.code = code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-agent-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", default=os.environ.get("EDGE_AGENT_DEMO_DIR",
                                                              "demo-state"))
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--offline", action="store_true",
                        help="start no broker or central: the store sells and queues; "
                             "a broker started later on the demo port is drained to")
    parser.add_argument("--opening-stock", type=int, default=OPENING_STOCK,
                        help="units of each item in a new store's opening delivery")
    parser.add_argument("--free-ports", action="store_true",
                        help="use free ports, never config/demo.toml's (a second demo on the "
                             "same machine; the agent then runs a copy of that file)")
    args = parser.parse_args(argv)
    demo = Demo(Path(args.state_dir), args.duration, broker=not args.offline,
                opening=args.opening_stock, free_ports=args.free_ports)
    try:
        return asyncio.run(demo.run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\nstopping: agent, central and broker", flush=True)
        return 0
    finally:
        demo.stop_children()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
