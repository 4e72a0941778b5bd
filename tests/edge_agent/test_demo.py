"""The README's main command: the demo store runs the whole loop on one machine.

Each test runs the real demo (simulator, agent, mosquitto, central as processes) and
follows its narration line by line, waiting for progress rather than for a fixed time.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import demo_story
from edge_agent.demo import DEMO_CONFIG, Demo, port_open
from tests.helpers.mosquitto import Broker

REPO = Path(__file__).resolve().parents[2]


class DemoProcess:
    def __init__(self, state: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            # free ports: a fixed port checked then bound races another run on this machine
            [sys.executable, "-m", "edge_agent.demo", "--state-dir", str(state),
             "--free-ports", *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name="demo-stdout").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str | Callable[[str], bool], within_s: float = 120) -> str:
        test = (lambda ln: re.search(pattern, ln) is not None) if isinstance(pattern, str) \
            else pattern
        for line in self.lines:
            if test(line):
                return line
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if test(line):
                return line
        raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines[-60:]))

    def children(self) -> list[int]:
        """Our demo's child processes (agent, central, mosquitto), from /proc."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                found.append(int(stat.parent.name))
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextmanager
def demo(state: Path, *args: str) -> Iterator[DemoProcess]:
    process = DemoProcess(state, *args)
    try:
        yield process
    finally:
        process.stop()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stock_of(line: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"([A-Z0-9-]+)=(-?\d+)", line.split("stock:")[1])}


@pytest.mark.timeout(400)
def test_demo_tells_the_whole_loop_replenishes_and_cleans_up_on_sigterm(tmp_path: Path
                                                                         ) -> None:
    state = tmp_path / "demo-state"
    with demo(state, "--opening-stock", "6") as run:
        run.wait_for("broker: a private mosquitto")
        # plain words for each scan, sale, batch, ack and central command
        run.wait_for(r"till T1: scanned .* basket 1 line")
        run.wait_for(r"till T1: SALE recorded")
        run.wait_for(r"sync: store → central: a batch of \d+ event\(s\), seq .*sale")
        run.wait_for(r"sync: central → store: ack, everything through seq \d+")
        # a store replenishes: the back room receives what runs low, central sends more
        run.wait_for(r"back room BR: DELIVERY received: 12 x")
        run.wait_for(r"central → store: command \d+ stock adjustment \(replenishment\)")
        # shoppers' visits close and are sent (tags come back later than absence_gap_s)
        run.wait_for(r"sync: store → central: .*visit")
        last = run.wait_for(r"^\S+  store: seq \d+ pending \d+ online")
        assert all(v >= 0 for v in stock_of(last).values()), last
        children = run.children()
        assert len(children) == 3, children  # mosquitto, central, agent
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(60) == 0
        run.wait_for("stopping: agent, central and broker", within_s=5)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in children if alive(pid)], "children left running"
    agent_log = (state / "logs" / "agent.log").read_text()
    assert "Traceback" not in agent_log

    # A restart keeps the store's stock: no second opening delivery.
    with demo(state, "--duration", "5") as again:
        again.wait_for(r"playing a shop day")
        assert again.proc.wait(90) == 0
        assert not any("new store database" in ln for ln in again.lines), again.lines
    with sqlite3.connect(state / "ledger.db") as conn:
        bodies = [json.loads(r[0]) for r in conn.execute(
            "SELECT payload FROM events WHERE type = 'receipt'")]
    openings = [b for b in bodies if b.get("data", {}).get("ref") == "DEMO-OPENING"]
    assert len(openings) == 1


@pytest.mark.timeout(300)
def test_demo_stops_and_says_why_when_the_agent_dies(tmp_path: Path) -> None:
    """A demo whose agent is gone says so with the agent log's last lines and exits 1,
    instead of narrating "agent: starting…" forever."""
    with demo(tmp_path / "demo-state") as run:
        run.wait_for(r"playing a shop day")
        agents = [pid for pid in run.children()
                  if b"edge_agent" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(agents) == 1, agents
        os.kill(agents[0], signal.SIGKILL)
        run.wait_for(r"agent exited with code -9; the last lines of .*agent\.log:")
        assert run.proc.wait(60) == 1
        children = run.children()
        assert not [pid for pid in children if alive(pid)], "children left running"


@pytest.mark.timeout(300)
def test_demo_sells_offline_and_drains_when_a_broker_appears(tmp_path: Path) -> None:
    state = tmp_path / "demo-state"
    with demo(state, "--offline") as run:
        run.wait_for("no broker")
        run.wait_for(r"till T1: SALE recorded")
        line = run.wait_for(lambda ln: (m := re.search(r"store: seq (\d+) pending (\d+) "
                                                       r"OFFLINE", ln)) is not None
                            and int(m.group(1)) >= 3)
        queued = int(re.search(r"seq (\d+)", line).group(1))  # type: ignore[union-attr]
        port = int(tomllib.loads((state / "agent.toml").read_text())["mqtt"]["url"]
                   .rsplit(":", 1)[1])
        seen: set[int] = set()
        got_all = threading.Event()

        def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
            body = json.loads(msg.payload)
            seen.update(int(e["seq"]) for e in body.get("events", []))
            if set(range(1, queued + 1)) <= seen:
                got_all.set()

        broker = Broker(tmp_path, port)
        broker.start()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-central")
        client.on_message = on_message
        client.on_connect = lambda c, *_a: c.subscribe("retail/v1/stores/DEMO1/events", 1)
        try:
            client.connect("127.0.0.1", port)
            client.loop_start()
            assert got_all.wait(120), f"saw {sorted(seen)}, queued 1..{queued}"
        finally:
            client.loop_stop()
            client.disconnect()
            # Even a SIGKILLed demo leaves nothing running: its children follow it.
            children = run.children()
            assert children
            run.proc.kill()
            run.proc.wait(60)
            deadline = time.monotonic() + 30
            while any(alive(pid) for pid in children) and time.monotonic() < deadline:
                time.sleep(0.2)
            broker.stop()
        assert not [pid for pid in children if alive(pid)], "the agent outlived the demo"


def test_story_lines_are_plain_words() -> None:
    demo_story.NAMES["A-1"] = "Blue mug"
    assert demo_story.store_event("basket", {
        "action": "add", "terminal": "T1", "total": "12.90", "currency": "EUR",
        "lines": [{"sku": "A-1", "qty": 1}]}) == "till T1: scanned Blue mug — basket 1 " \
        "line(s), 12.90 EUR"
    batch = json.dumps({"events": [{"seq": 4, "type": "sale"}, {"seq": 5, "type": "visit"}]})
    assert demo_story.mqtt_message("retail/v1/stores/S1/events", batch.encode()) == \
        "sync: store → central: a batch of 2 event(s), seq 4-5 (1 sale, 1 visit)"
    command = json.dumps({"commands": [{"cseq": 3, "type": "stock.adjust",
                                        "data": {"reason": "replenishment"},
                                        "stock": [{"sku": "A-1", "delta": 12}]}]})
    assert demo_story.mqtt_message("retail/v1/stores/S1/commands", command.encode()) == \
        "central → store: command 3 stock adjustment (replenishment): +12 Blue mug"
    assert demo_story.mqtt_message("retail/v1/stores/S1/health", b"{}") is None


def test_first_make_demo_says_what_it_installs() -> None:
    # as a person runs it: not inside `make test`'s own make (which would add
    # "make[1]: Entering directory" lines)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    dry = subprocess.run(["make", "--no-print-directory", "-n", "-B", ".venv/.installed"],
                         cwd=REPO, capture_output=True, text=True, check=True, env=env).stdout
    first = dry.splitlines()[0]
    assert first.startswith("echo"), dry
    assert "dependencies" in first, dry
    assert "installing" in dry  # each package named as pip collects it


def test_demo_config_is_what_the_demo_runs() -> None:
    config = tomllib.loads(DEMO_CONFIG.read_text())
    demo = Demo(REPO / "demo-state", None)
    assert config["mqtt"]["url"] == f"mqtt://127.0.0.1:{demo.mqtt_port}"
    assert config["central"]["url"] == f"http://127.0.0.1:{demo.central_port}"
    if not any(port_open(p) for p in (demo.mqtt_port, demo.central_port)):
        assert demo.agent_config() == DEMO_CONFIG  # the very file, not a copy
