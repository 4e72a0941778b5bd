"""The footprint table: every figure of issue 18's item 1 with its target and floor, and a
saved run from an older ``bench.footprint`` still rendered (a row says what it lacks)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from bench import footprint_rows, suite

LAST_RUN = Path(__file__).resolve().parents[2] / "bench" / "last-run.json"


def _sample(rss: float, cpu: float) -> dict[str, float]:
    return {"rss_mib": rss, "rss_max_mib": rss, "hwm_mib": rss + 1, "cpu_pct": cpu,
            "cpu_s": cpu * 0.15, "wall_s": 15.0, "device_ptys_open": 4}


def _figures() -> dict[str, Any]:
    return {
        "bare": {"ready_s": 0.02, "rss_mib": 11.0, "ready_cpu_s": 0.01},
        "stack": {"ready_s": 0.3, "rss_mib": 50.0, "ready_cpu_s": 0.23},
        "idle": _sample(60.0, 0.1), "ready_s": 0.5, "ready_max_s": 0.9,
        "ready_cpu_s": 0.45, "idle_seconds": 15.0,
        "backlog": {"events": 100_000, "build_events_per_s": 70_000.0, "db_mib": 44.0,
                    "ready_s": 0.6, "ready_cpu_s": 0.52, **_sample(63.0, 0.4),
                    "drain_s": 1.0, "drain_events_per_s": 100_000.0,
                    "after_drain": _sample(66.0, 0.2)},
        "budget": {"how": "cgroup v2", "ready_s": 2.0, "ready_cpu_s": 0.48,
                   "bare_ready_s": 0.07, "stack_ready_s": 1.2, "stack_ready_cpu_s": 0.25,
                   "idle": _sample(61.0, 0.12),
                   "idle_throttled_periods": 0, "idle_periods": 30},
    }


def _by_name(rows: list[Any]) -> dict[str, Any]:
    return {row.name: row for row in rows}


def test_every_target_of_the_issue_has_a_row_with_its_floor() -> None:
    rows = _by_name(footprint_rows.rows(_figures()))
    cpu = rows["CPU time to READY=1 (median; what a quiet machine would take)"]
    assert (cpu.target, cpu.met, cpu.ceiling_name) == ("≤ 0.5 s", True, "bare interpreter")
    floor = rows["idle RSS against the libraries' floor"]
    assert floor.ceiling == 50.0
    assert floor.met is False
    assert rows["idle RSS, devices connected, 15 s"].met is False
    assert rows["idle CPU online, 15 s"].met is True
    assert rows["idle CPU offline (broker unreachable, probing), 15 s"].met is False  # 0.4 %
    after = rows["RSS after draining that backlog into the reference central, 15 s idle"]
    assert after.met is False  # 66 > 60 + 5
    assert rows["RSS with a 100,000-event offline backlog"].met is True  # 63 <= 65
    quick_check = rows["CPU time to READY=1 with that backlog (PRAGMA quick_check of a big "
                       "ledger)"]
    assert quick_check.met is False
    assert quick_check.ceiling == 0.45
    budget = rows["CPU time to READY=1 under 25% of one core"]
    assert budget.met is True
    assert budget.ceiling == 0.45
    assert rows["idle RSS under 25% of one core"].ceiling == 60.0
    floor = rows["start → READY=1 under 25% of one core against the libraries' floor"]
    assert floor.ratio == 2.0 / 1.2
    assert all(not row.error for row in rows.values())


def test_a_budget_that_cannot_be_applied_says_why() -> None:
    figures = _figures()
    figures["budget"] = {"how": None, "why_not": "no writable cgroup"}
    rows = footprint_rows.rows(figures)
    assert rows[-1].value is None
    assert "no writable cgroup" in rows[-1].note


OLD_RUN: dict[str, Any] = {
    # the footprint figures of the full run of 2026-12-04 (bench/last-run.json then), made
    # by a bench.footprint without the libraries' floor, the drain and the budget phases
    "bare": {"ready_s": 0.0185, "rss_mib": 11.35, "ready_cpu_s": 0.01},
    "idle": {"rss_mib": 77.1, "rss_max_mib": 77.1, "hwm_mib": 78.23, "cpu_pct": 0.35,
             "cpu_s": 0.21, "wall_s": 60.0, "device_ptys_open": 4},
    "ready_s": 0.849, "ready_max_s": 1.32, "ready_samples": [0.78, 0.85, 1.32],
    "ready_cpu_s": 0.74, "stop_s_max": 0.217, "unclean_stops": 0,
    "backlog": {"events": 1_000_000, "build_events_per_s": 59635.3, "db_mib": 435.8,
                "ready_s": 1.41, "ready_cpu_s": 0.72, "rss_mib": 76.73, "rss_max_mib": 76.73,
                "hwm_mib": 78.13, "cpu_pct": 0.2, "cpu_s": 0.01, "wall_s": 5.0,
                "device_ptys_open": 4},
    "idle_seconds": 60.0,
}


def test_a_saved_run_of_an_older_module_renders_rows_not_raw_numbers() -> None:
    rows = suite.rows_for("footprint", {"ok": copy.deepcopy(OLD_RUN)}, {})
    assert not any("adapter" in row.note for row in rows)
    names = [row.name for row in rows]
    assert "idle RSS, devices connected, 60 s" in names
    assert "idle CPU offline (broker unreachable, probing), 5 s" in names  # its own window
    lacking = [row for row in rows if row.note.startswith("not measured")]
    assert {("stack" in r.note, "after_drain" in r.note, "budget" in r.note)
            for r in lacking} == {(True, False, False), (False, True, False),
                                  (False, False, True)}


def test_the_saved_full_run_renders_without_falling_back() -> None:
    """Whatever bench/last-run.json holds (the lead replaces it), its rows are figures."""
    saved = json.loads(LAST_RUN.read_text())["raw"]["footprint"]
    rows = suite.rows_for("footprint", copy.deepcopy(saved), {})
    assert rows
    assert not any("adapter" in row.note for row in rows)


def test_a_run_without_its_backlog_phase_still_renders() -> None:
    figures = _figures()
    del figures["backlog"], figures["stack"], figures["budget"]
    rows = footprint_rows.rows(figures)
    assert [r.name for r in rows if r.value is None] == [
        "CPU time to READY=1 against the libraries' floor",
        "idle RSS against the libraries' floor", "offline backlog",
        "under a CPU budget of 25% of one core"]
