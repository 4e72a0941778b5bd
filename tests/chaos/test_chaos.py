"""Chaos runs: real mosquitto, central and agents as processes, faults while facts flow.

The short run is part of the default test run; ``--chaos-long`` runs the long one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import ChaosPlan, ChaosRun
from tests.helpers.mosquitto import Broker

pytestmark = pytest.mark.chaos


# a backstop against a hang only: the run itself fails when nothing progresses (stall_s)
@pytest.mark.timeout(1800)
def test_short_chaos_run_loses_and_duplicates_nothing(tmp_path: Path, broker: Broker) -> None:
    plan = ChaosPlan(facts=2000, agent_kills=10, broker_kills=3, central_kills=1,
                     proxy_faults=6, clock_jumps=4, rate=150.0, seed=20261125, via="api")
    report = ChaosRun(tmp_path, broker, plan).run()
    print(report.table())
    assert report.faults["agent_kills"] >= 10
    for mode in ("external", "after_commit", "in_command", "after_command"):
        assert report.faults[f"agent_kill_{mode}"] >= 1, mode
    assert report.faults["broker_kills"] >= 3
    assert sum(s.attempted for s in report.stores) >= 2000
    assert report.passed, report.table()


@pytest.mark.timeout(3600)
def test_long_chaos_run(tmp_path: Path, broker: Broker, request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("--chaos-long"):
        pytest.skip("the long chaos run needs --chaos-long")
    plan = ChaosPlan(facts=5000, stores=2, agent_kills=200, broker_kills=20, central_kills=5,
                     proxy_faults=60, clock_jumps=30, rate=30.0, seed=7)
    report = ChaosRun(tmp_path, broker, plan).run()
    print(report.table())
    assert report.faults["agent_kills"] >= 200
    assert report.faults["broker_kills"] >= 20
    assert sum(s.attempted for s in report.stores) >= 10000
    assert report.passed, report.table()
