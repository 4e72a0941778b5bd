"""The chaos harness: real mosquitto, the reference central and store agents as processes,
faults injected while facts flow, and a Jepsen-style classification at the end.

Every fact the driver records carries ``data.chaos_fact = n``. At the end each fact number
is classified, per store, as Jepsen's queue checker does:

- ``ok``: acknowledged by the ledger and present exactly once at central;
- ``lost``: acknowledged and absent at central;
- ``duplicated``: present more than once (at central or in the store's own ledger);
- ``unexpected``: present at central but never attempted;
- ``recovered`` (informative): attempted, the acknowledgement never reached the driver
  (killed in between), and present exactly once — the write had committed.

The run passes when nothing is lost, duplicated or unexpected, central's and the store's
stock digests (PROTOCOL §7) are equal, every seq of every epoch is at central without a gap,
every command central issued is applied and acknowledged, and ``PRAGMA quick_check`` is
``ok`` on every database.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sync.wire import digest_lines
from tests.helpers.faultproxy import FaultProxy
from tests.helpers.mosquitto import Broker
from tests.helpers.processes import (
    AgentProcess,
    CentralProcess,
    faketime_lib,
    quick_check,
)
from tests.helpers.progress import StallWatch, wait_progress

AGENT_MODES = ("none", "after_commit", "in_command", "none", "after_command")
"""Each life of an agent, in turn: killed from outside only, or by itself at a precise point."""
PROXY_FAULTS = ("reset", "refuse", "stall", "blackhole", "half_open")


@dataclass
class ChaosPlan:
    facts: int = 2000
    stores: int = 1
    agent_kills: int = 10
    broker_kills: int = 3
    central_kills: int = 1
    proxy_faults: int = 6
    clock_jumps: int = 4
    rate: float = 60.0
    """Facts per second, per store."""
    command_every_s: float = 1.0
    seed: int = 1
    quiesce_timeout_s: float = 90.0
    """Quiescence fails only when no watermark moved for this long (not a total)."""
    stall_s: float = 180.0
    """The run fails only when no fact was attempted or acknowledged and no fault applied
    for this long, however long the run takes on a loaded machine."""
    via: str = "api"
    """``api``: facts POSTed to the agent's local API (idempotency keys, retried after a
    kill); ``ledger``: written through the ledger in the agent process."""


@dataclass
class StoreResult:
    store: str
    attempted: int = 0
    acknowledged: int = 0
    refused: int = 0
    ok: int = 0
    lost: list[int] = field(default_factory=list)
    duplicated: list[int] = field(default_factory=list)
    unexpected: list[int] = field(default_factory=list)
    recovered: int = 0
    other_events: dict[str, int] = field(default_factory=dict)
    epochs: int = 0
    store_digest: str = ""
    central_digest: str = ""
    gaps: list[str] = field(default_factory=list)
    issued_cseq: int = 0
    applied_cseq: int = 0
    acked_cseq: int = 0
    quick_check: str = ""
    central_digest_match: bool | None = None
    """Central's own last §7 digest comparison for the store (None: none compared yet)."""
    alerts: dict[str, int] = field(default_factory=dict)


BAD_ALERTS = frozenset({"stock_mismatch", "event_conflict", "history_rolled_back"})
"""Central alerts that a correct store never causes, whatever the faults."""


@dataclass
class ChaosReport:
    plan: ChaosPlan
    stores: list[StoreResult] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    commands_issued: int = 0
    central_quick_check: str = ""
    seconds: float = 0.0
    clock_jumps_applied: bool = False

    @property
    def passed(self) -> bool:
        return all(
            not s.lost and not s.duplicated and not s.unexpected and not s.gaps
            and s.store_digest == s.central_digest
            and s.issued_cseq == s.applied_cseq == s.acked_cseq
            and s.quick_check == "ok"
            and s.central_digest_match is not False
            and not BAD_ALERTS & set(s.alerts)
            for s in self.stores
        ) and self.central_quick_check == "ok"

    def table(self) -> str:
        lines = [
            f"chaos run ({self.plan.via}): {sum(s.attempted for s in self.stores)} facts "
            "attempted over "
            f"{self.seconds:.0f} s, {len(self.stores)} store(s), seed {self.plan.seed}",
            "faults: " + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())),
            f"commands issued by central: {self.commands_issued}; clock jumps "
            + ("applied (libfaketime)" if self.clock_jumps_applied else "not applied "
               "(libfaketime not installed)"),
            f"{'store':<8}{'attempted':>10}{'acked':>8}{'refused':>8}{'ok':>8}{'lost':>6}{'dup':>6}"
            f"{'unexp':>7}{'recov':>7}{'epochs':>8}  digest  cseq(i/a/k)  quick_check",
        ]
        for s in self.stores:
            same = "equal" if s.store_digest == s.central_digest else "DIFFER"
            if s.central_digest_match is not None:
                same += "/" + ("match" if s.central_digest_match else "MISMATCH")
            lines.append(
                f"{s.store:<8}{s.attempted:>10}{s.acknowledged:>8}{s.refused:>8}{s.ok:>8}"
                f"{len(s.lost):>6}"
                f"{len(s.duplicated):>6}{len(s.unexpected):>7}{s.recovered:>7}{s.epochs:>8}"
                f"  {same:<6}  {s.issued_cseq}/{s.applied_cseq}/{s.acked_cseq}"
                f"  {s.quick_check}")
            if s.lost or s.duplicated or s.unexpected or s.gaps:
                lines.append(f"   lost {s.lost[:20]} duplicated {s.duplicated[:20]} "
                             f"unexpected {s.unexpected[:20]} gaps {s.gaps[:5]}")
            if s.alerts:
                lines.append("   central alerts: " + ", ".join(
                    f"{k} {v}" for k, v in sorted(s.alerts.items())))
            if s.other_events:
                lines.append("   other events: " + ", ".join(
                    f"{k} {v}" for k, v in sorted(s.other_events.items())))
        lines.append(f"central quick_check: {self.central_quick_check}; "
                     f"{'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


_ID_FIELD = {"sale": "sale_id", "return": "return_id", "receipt": "ref", "count": "count_id"}


def fact_number(event: dict[str, Any]) -> int | None:
    """The chaos fact an event records (None for the agent's own events: alerts, …)."""
    data = event.get("data")
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("chaos_fact"), int):
        return int(data["chaos_fact"])
    field = _ID_FIELD.get(str(event.get("type")))
    value = data.get(field) if field else None
    if isinstance(value, str) and value.startswith("chaos-") and value[6:].isdigit():
        return int(value[6:])
    return None


class ChaosRun:
    def __init__(self, workdir: Path, broker: Broker, plan: ChaosPlan) -> None:
        self.workdir = workdir
        self.broker = broker
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.stores = [f"S{i + 1:03d}" for i in range(plan.stores)]
        self.central = CentralProcess(workdir / "central", broker.url, self.stores)
        self.proxies: dict[str, FaultProxy] = {}
        self.agents: dict[str, AgentProcess] = {}
        self.report = ChaosReport(plan)
        self.use_faketime = plan.clock_jumps > 0 and faketime_lib() is not None
        self.report.clock_jumps_applied = self.use_faketime
        self.lives = 0
        self.modes: dict[str, str] = {}
        self.started_at: dict[str, float] = {}

    # -- pieces ----------------------------------------------------------------------------
    def _start_agent(self, store: str, final: bool = False) -> None:
        mode, arg = "none", 0
        if not final:
            mode = AGENT_MODES[self.lives % len(AGENT_MODES)]
            self.lives += 1
            if mode == "none":
                pass
            elif mode == "after_commit":
                arg = self.rng.randint(1, 8)
            else:
                arg = 1
        self.agents[store].start(target=self.plan.facts, rate=self.plan.rate, mode=mode,
                                 mode_arg=arg, seed=self.rng.randrange(1 << 30),
                                 via=self.plan.via)
        self.modes[store] = mode
        self.started_at[store] = time.monotonic()

    def _restart_broker(self) -> None:
        self.broker.kill()
        time.sleep(self.rng.uniform(0.2, 1.5))
        for _ in range(50):
            try:
                self.broker.start()
            except RuntimeError:
                time.sleep(0.1)
            else:
                return
        self.broker.start()

    def _issue_command(self) -> None:
        store = self.rng.choice(self.stores)
        sku = f"SKU-{self.rng.randrange(24):03d}"
        try:
            if self.rng.random() < 0.9:
                self.central.api("POST", f"/v1/stores/{store}/adjust", json={
                    "reason": "replenishment", "ref": f"chaos-{self.report.commands_issued}",
                    "lines": [{"sku": sku, "delta": self.rng.randint(1, 12)}]})
            else:
                self.central.api("POST", f"/v1/stores/{store}/catalog", json={"items": [
                    {"sku": sku, "name": f"item {sku}", "gtins": [], "price": "1.50",
                     "currency": "EUR", "uom": "unit", "active": True}]})
        except httpx.HTTPError:
            self.report.faults["command_http_errors"] += 1
            return
        self.report.commands_issued += 1

    def _proxy_fault(self) -> None:
        proxy = self.proxies[self.rng.choice(self.stores)]
        fault = self.rng.choice(PROXY_FAULTS)
        seconds = self.rng.uniform(0.5, 2.5)
        if fault == "reset":
            proxy.reset()
        else:
            getattr(proxy, fault)(seconds)
        self.report.faults[f"proxy_{fault}"] += 1

    def _clock_jump(self) -> None:
        store = self.rng.choice(self.stores)
        offset = self.rng.choice([-1, 1]) * self.rng.randint(60, 3 * 86400)
        self.agents[store].set_clock_offset(offset)
        self.report.faults["clock_jumps"] += 1

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> ChaosReport:
        started = time.monotonic()
        plan = self.plan
        self.central.start()
        for store in self.stores:
            proxy = FaultProxy(self.broker.port).start()
            self.proxies[store] = proxy
            self.agents[store] = AgentProcess(
                self.workdir / store, store, proxy.url, self.central,
                faketime=self.use_faketime)
            self._start_agent(store)
        duration = plan.facts / plan.rate
        schedule: list[tuple[float, str]] = []
        for kind, n in (("agent_kill", plan.agent_kills), ("broker_kill", plan.broker_kills),
                        ("central_kill", plan.central_kills),
                        ("proxy_fault", plan.proxy_faults),
                        ("clock_jump", plan.clock_jumps if self.use_faketime else 0)):
            schedule += [(self.rng.uniform(0.05, 0.95) * duration, kind) for _ in range(n)]
        schedule.sort()
        next_command = 0.0
        stalls = StallWatch(plan.stall_s, "the chaos run's facts")
        try:
            while True:
                now = time.monotonic() - started
                for store in self.stores:
                    agent = self.agents[store]
                    if not agent.alive():
                        code = agent.proc.returncode if agent.proc is not None else None
                        agent.kill()
                        if code == -9:
                            self.report.faults[f"agent_kill_{self.modes[store]}"] += 1
                            self.report.faults["agent_kills"] += 1
                        elif code is not None:
                            raise AssertionError(
                                f"agent {store} exited with {code}; see {agent.log}")
                        self._start_agent(store)
                while schedule and schedule[0][0] <= now:
                    when, kind = schedule.pop(0)
                    if kind == "agent_kill":
                        store = self.rng.choice(self.stores)
                        if (self.modes[store] != "none"
                                and time.monotonic() - self.started_at[store] < 6):
                            # give a life that kills itself at a precise point its chance
                            schedule.append((when + 0.5, kind))
                            schedule.sort()
                            break
                        if self.agents[store].kill():
                            self.report.faults["agent_kill_external"] += 1
                            self.report.faults["agent_kills"] += 1
                        self._start_agent(store)
                    elif kind == "broker_kill":
                        self._restart_broker()
                        self.report.faults["broker_kills"] += 1
                    elif kind == "central_kill":
                        self.central.kill()
                        time.sleep(self.rng.uniform(0.2, 1.0))
                        self.central.start()
                        self.report.faults["central_kills"] += 1
                    elif kind == "proxy_fault":
                        self._proxy_fault()
                    elif kind == "clock_jump":
                        self._clock_jump()
                if now >= next_command and self.central.alive():
                    self._issue_command()
                    next_command = now + plan.command_every_s * self.rng.uniform(0.5, 1.5)
                facts = [a.read_facts() for a in self.agents.values()]
                done = all(max(f[0], default=0) >= plan.facts for f in facts)
                if done and not schedule:
                    break
                # progress, not a total: facts attempted or acknowledged, faults applied
                stalls.see((tuple((len(f[0]), len(f[1])) for f in facts), len(schedule)))
                stalls.check()
                time.sleep(0.05)
            self._quiesce()
        finally:
            for agent in self.agents.values():
                agent.terminate()
            self.central.terminate()
            for proxy in self.proxies.values():
                proxy.stop()
        self.report.seconds = time.monotonic() - started
        self._classify()
        return self.report

    def _quiesce(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()
        if self.broker.process is None or self.broker.process.poll() is not None:
            self._restart_broker()
        if not self.central.alive():
            self.central.start()
        for store, agent in self.agents.items():
            if not agent.alive() or self.modes[store] != "none":
                agent.kill()
                if self.use_faketime:
                    agent.set_clock_offset(0)
                self._start_agent(store, final=True)
        wait_progress(self._converged, self._progress, self.plan.quiesce_timeout_s,
                      "quiescence (every event acknowledged, every command applied and "
                      "acknowledged)", interval=0.3)

    def _progress(self) -> tuple[Any, ...]:
        """Every watermark of the agents and of central: quiescence waits while they move."""
        out: list[Any] = []
        for agent in self.agents.values():
            try:
                out.append(tuple(agent.query("SELECT epoch, last_seq, acked_seq FROM epochs")))
                out.append(tuple(agent.query(
                    "SELECT value FROM meta WHERE key = 'applied_cseq'")))
            except sqlite3.Error:
                out.append(None)
        try:
            out.append(tuple(self.central.query("SELECT store, epoch, applied_seq FROM epochs")))
            out.append(tuple(self.central.query(
                "SELECT store, issued_cseq, acked_cseq, digest_result FROM stores")))
        except sqlite3.Error:
            out.append(None)
        return tuple(out)

    def _converged(self) -> bool:
        for store, agent in self.agents.items():
            if not agent.alive():
                code = agent.proc.returncode if agent.proc is not None else None
                raise AssertionError(f"agent {store} died during quiescence (exit {code}); "
                                     f"see {agent.log}")
            epochs = agent.query(
                "SELECT epoch, last_seq, acked_seq FROM epochs ORDER BY ordinal")
            if any(last != acked for _, last, acked in epochs):
                return False
            attempted, acked_facts, refused = agent.read_facts()
            if attempted - acked_facts - refused and self.plan.via == "api":
                return False  # the POS is still retrying
            central = dict(self.central.query(
                "SELECT epoch, applied_seq FROM epochs WHERE store = ?", (store,)))
            if any(central.get(epoch, 0) != last for epoch, last, _ in epochs if last):
                return False
            row = self.central.query(
                "SELECT issued_cseq, acked_cseq FROM stores WHERE store = ?", (store,))
            if not row or row[0][0] != row[0][1]:
                return False
            applied = agent.query("SELECT value FROM meta WHERE key = 'applied_cseq'")
            if not applied or int(applied[0][0]) != row[0][0]:
                return False
            # central compared a §7 digest of exactly this final state
            digest = self.central.query(
                "SELECT digest_result FROM stores WHERE store = ?", (store,))
            if not digest or not digest[0][0]:
                return False
            result = json.loads(digest[0][0])
            current, last, _ = epochs[-1] if epochs else ("", 0, 0)
            if (result.get("epoch"), result.get("through_seq"), result.get("through_cseq")) != (
                    current, last, row[0][0]):
                return False
        return True

    # -- classification ----------------------------------------------------------------------
    def _classify(self) -> None:
        self.report.central_quick_check = quick_check(self.central.db)
        for store, agent in self.agents.items():
            result = StoreResult(store)
            attempted, acked, refused = agent.read_facts()
            result.attempted, result.acknowledged = len(attempted), len(acked)
            result.refused = len(refused)
            at_central: Counter[int] = Counter()
            for (body,) in self.central.query(
                    "SELECT body FROM events WHERE store = ?", (store,)):
                event: dict[str, Any] = json.loads(body)
                number = fact_number(event)
                if isinstance(number, int):
                    at_central[number] += 1
                else:
                    key = event.get("type", "?")
                    if key == "alert":
                        key = f"alert:{event.get('data', {}).get('kind')}"
                    result.other_events[key] = result.other_events.get(key, 0) + 1
            in_store: Counter[int] = Counter()
            for (payload,) in agent.query("SELECT payload FROM events"):
                number = fact_number(json.loads(payload))
                if isinstance(number, int):
                    in_store[number] += 1
            for number in sorted(acked | set(at_central) | set(in_store)):
                count = at_central[number]
                if count > 1 or in_store[number] > 1:
                    result.duplicated.append(number)
                elif number not in attempted or (number in refused and count):
                    result.unexpected.append(number)
                elif count == 1 and number in acked:
                    result.ok += 1
                elif count == 1:
                    result.recovered += 1
                elif number in acked:
                    result.lost.append(number)
            # gapless seqs per epoch at central, matching the store's
            for epoch, last, _ in agent.query("SELECT epoch, last_seq, acked_seq FROM epochs"):
                row = self.central.query(
                    "SELECT count(*), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM events "
                    "WHERE store = ? AND epoch = ?", (store, epoch))[0]
                if last and tuple(row) != (last, 1, last):
                    result.gaps.append(f"{epoch[:8]}: store last {last}, central {row}")
            result.epochs = len(agent.query("SELECT epoch FROM epochs"))
            _, result.store_digest = digest_lines(
                (str(s), int(o), int(r)) for s, o, r in
                agent.query("SELECT sku, on_hand, reserved FROM stock"))
            _, result.central_digest = digest_lines(
                (sku, on, res) for sku, (on, res) in self.central.stock(store).items())
            cseqs = self.central.query(
                "SELECT issued_cseq, acked_cseq FROM stores WHERE store = ?", (store,))
            result.issued_cseq, result.acked_cseq = int(cseqs[0][0]), int(cseqs[0][1] or 0)
            applied = agent.query("SELECT value FROM meta WHERE key = 'applied_cseq'")
            result.applied_cseq = int(applied[0][0]) if applied else 0
            result.quick_check = quick_check(agent.db)
            result.alerts = {str(k): int(n) for k, n in self.central.query(
                "SELECT kind, count(*) FROM alerts WHERE store = ? GROUP BY kind", (store,))}
            digest = self.central.query(
                "SELECT digest_result FROM stores WHERE store = ?", (store,))
            if digest and digest[0][0]:
                result.central_digest_match = bool(json.loads(digest[0][0]).get("match"))
            self.report.stores.append(result)
