"""The store week: one store through seven simulated days (issue 20, item 9).

Real mosquitto, central and agent processes (the soak driver: the real ``Agent`` plus
sales through the ledger and presence reads into the visitors engine). The agent's wall
clock runs ``SPEED`` times faster (libfaketime offsets stepped forward every half second,
so time never goes back, even across SIGKILLs). Over the week: 100,000 sales, 1,000,000
presence reads, a key rotation a day, retention (1 day) pruning, 3 broker outages and 10
agent kills. At the end nothing is lost or doubled, store and central digests are equal,
and RSS and database size stay bounded. RSS and database size over the week are plotted
to ``docs/soak-week.png`` with the figures in ``docs/soak-week.json``.

Runs only with ``--soak`` (marker ``soak``), best with its own ``--basetemp`` (other
pytest runs prune older temporary directories); about fifteen minutes on two cores.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import ChaosPlan, ChaosRun
from tests.helpers.mosquitto import Broker
from tests.helpers.processes import faketime_lib

pytestmark = pytest.mark.soak

REPO = Path(__file__).resolve().parents[2]
WEEK_S = 7 * 86400
# SOAK_SCALE < 1 runs fewer sales and reads through the same week, kills and outages (for a
# machine that cannot make 100,000 sales in reasonable time); the result says which scale
SCALE = float(os.environ.get("SOAK_SCALE", "1"))
SALES = int(100_000 * SCALE)
READS = int(1_000_000 * SCALE)
SALES_RATE = float(os.environ.get("SOAK_SALES_RATE", "60"))  # per second of real time
SPEED = WEEK_S / (SALES / SALES_RATE) * 1.15  # a week passes while the sales are made
RSS_LIMIT_MB = 400
DB_LIMIT_MB = 512


class SoakRun(ChaosRun):
    """The chaos harness with a fast clock, presence reads and samples of RSS and size."""

    def __init__(self, workdir: Path, broker: Broker, plan: ChaosPlan) -> None:
        super().__init__(workdir, broker, plan)
        self.use_faketime = True
        self.real_start = time.monotonic()
        self.samples: list[dict[str, float]] = []
        self.stop_sampling = threading.Event()

    def fake_elapsed(self) -> float:
        return (time.monotonic() - self.real_start) * SPEED

    def _start_agent(self, store: str, final: bool = False) -> None:
        agent = self.agents[store]
        if agent.driver != "tests.soak.driver":
            agent.driver = "tests.soak.driver"
            agent.extra_env = {"SOAK_PRESENCE_RATE": str(READS / (SALES / SALES_RATE)),
                               "SOAK_READS_LOG": str(agent.workdir / "reads.log")}
            agent.config.write_text(agent.config.read_text().replace(
                "min_free_bytes = 0\n", "min_free_bytes = 0\nevent_retention_days = 1\n"
            ) + "[visitors]\nretention_days = 1\n")
        self._set_clock(store)
        # every life records until killed from outside (the chaos run's self-inflicted
        # kills at precise points are its own business): ten kills are ten lives lost
        super()._start_agent(store, final=True)

    def _set_clock(self, store: str) -> None:
        self.agents[store].set_clock_offset(int(self.fake_elapsed()
                                                - (time.monotonic() - self.real_start)))

    def sample(self) -> None:
        """Every half second: the clock steps forward; RSS and database size are noted."""
        while not self.stop_sampling.wait(0.5):
            for store, agent in list(self.agents.items()):
                self._set_clock(store)
                rss = 0.0
                if agent.proc is not None:
                    try:
                        status = Path(f"/proc/{agent.proc.pid}/status").read_text()
                        rss = next(float(line.split()[1]) / 1024 for line in status.splitlines()
                                   if line.startswith("VmRSS:"))
                    except (OSError, StopIteration):
                        pass
                size = sum(p.stat().st_size for p in agent.db.parent.glob("ledger.db*")
                           if p.is_file() and not p.name.endswith(".lock"))
                self.samples.append({"day": self.fake_elapsed() / 86400, "rss_mb": rss,
                                     "db_mb": size / 2**20})

    def reads(self, store: str) -> dict[str, int]:
        """Presence reads and key figures over every life of the agent."""
        out = {"reads": 0, "key_rotations": 0, "keys_destroyed": 0, "checkpoint_busy": 0}
        life: list[int] = [0, 0, 0]
        path = self.agents[store].workdir / "reads.log"
        for line in path.read_text().splitlines() if path.exists() else []:
            parts = line.split()
            if parts == ["L"]:
                out["key_rotations"] += life[0]
                out["keys_destroyed"] += life[1]
                out["checkpoint_busy"] += life[2]
                life = [0, 0, 0]
            elif len(parts) == 5 and parts[0] == "P" and all(p.isdigit() for p in parts[1:]):
                out["reads"] += int(parts[1])
                life = [int(parts[2]), int(parts[3]), int(parts[4])]
        out["key_rotations"] += life[0]
        out["keys_destroyed"] += life[1]
        out["checkpoint_busy"] += life[2]
        return out


def plot(samples: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib  # noqa: PLC0415 - only the soak needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    days = [s["day"] for s in samples]
    fig, (rss, db) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5))
    rss.plot(days, [s["rss_mb"] for s in samples], linewidth=0.8)
    rss.set_ylabel("agent RSS (MiB)")
    db.plot(days, [s["db_mb"] for s in samples], linewidth=0.8, color="tab:orange")
    db.set_ylabel("ledger.db + WAL (MiB)")
    db.set_xlabel("simulated day (RSS 0: the agent was being restarted)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@pytest.mark.timeout(3600)
def test_store_week(tmp_path: Path, broker: Broker, request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("--soak"):
        pytest.skip("the store-week soak needs --soak")
    if faketime_lib() is None:
        pytest.skip("the soak's fast clock needs libfaketime (apt: faketime)")
    plan = ChaosPlan(facts=SALES, agent_kills=10, broker_kills=3, central_kills=0,
                     proxy_faults=0, clock_jumps=0, rate=SALES_RATE, seed=20261204,
                     via="ledger", command_every_s=5.0)
    run = SoakRun(tmp_path, broker, plan)
    sampler = threading.Thread(target=run.sample, name="soak.sampler", daemon=True)
    sampler.start()
    try:
        report = run.run()
    finally:
        run.stop_sampling.set()
        sampler.join(5)
        (tmp_path / "samples.json").write_text(json.dumps(run.samples))
        if run.samples:
            plot(run.samples, tmp_path / "soak-week.png", "store week (this run)")
    figures: dict[str, Any] = run.reads("S001")
    rss = [s["rss_mb"] for s in run.samples if s["rss_mb"]]
    size = [s["db_mb"] for s in run.samples]
    store = report.stores[0]
    figures.update(
        sales=store.attempted, sales_ok=store.ok, lost=len(store.lost),
        duplicated=len(store.duplicated), digests_equal=store.store_digest ==
        store.central_digest, days=round(run.fake_elapsed() / 86400, 2),
        agent_kills=report.faults["agent_kills"], broker_outages=report.faults["broker_kills"],
        rss_max_mb=round(max(rss), 1), rss_last_day_max_mb=round(max(
            s["rss_mb"] for s in run.samples if s["day"] >= run.samples[-1]["day"] - 1), 1),
        db_max_mb=round(max(size), 1), db_last_mb=round(size[-1], 1),
        real_seconds=round(report.seconds), passed=report.passed, scale=SCALE,
        speed=round(SPEED))
    print(report.table())
    print(json.dumps(figures, indent=2))
    (REPO / "docs" / "soak-week.json").write_text(json.dumps(figures, indent=2) + "\n")
    plot(run.samples, REPO / "docs" / "soak-week.png",
         f"store week (scale {SCALE:g}): {figures['sales']} sales, "
         f"{figures['reads']} presence reads, "
         f"{figures['key_rotations']} key rotations, {figures['agent_kills']} agent kills, "
         f"{figures['broker_outages']} broker outages")
    assert report.passed, report.table()
    assert figures["days"] >= 7
    assert figures["sales"] >= SALES
    assert figures["reads"] >= READS
    assert figures["key_rotations"] >= 7
    assert figures["keys_destroyed"] >= 7
    assert report.faults["agent_kills"] >= 10
    assert report.faults["broker_kills"] >= 3
    assert figures["rss_max_mb"] < RSS_LIMIT_MB
    assert figures["db_max_mb"] < DB_LIMIT_MB
