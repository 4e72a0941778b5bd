"""Smoke tests of the benchmark suite's own modules at tiny sizes.

They check that each benchmark produces its figures, with sane types, and that the suite
survives a broken benchmark. No timing is asserted: this machine is shared.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import ceilings, common, footprint, footprint_rows, scaling, suite


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value) and value > 0


def _table_ok(rows: list[common.Row]) -> None:
    assert rows
    assert all(not row.error for row in rows), [row.error for row in rows]
    table = common.markdown_table(rows)
    assert table.count("\n") == len(rows) + 1
    for row in rows:
        if row.ceiling is not None and row.value is not None:
            if row.ceiling:
                assert row.ratio == pytest.approx(row.value / row.ceiling)
            else:  # a floor measured at 0 (a bare interpreter's idle CPU): no ratio
                assert row.ratio is None


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert common.percentile(values, 0.5) == 50.0
    assert common.percentile(values, 0.99) == 99.0
    assert common.percentile(values, 1.0) == 100.0
    assert math.isnan(common.percentile([], 0.5))


def test_fmt_and_rows() -> None:
    assert common.fmt(1_234_567.0, "ev/s") == "1.23M ev/s"
    assert common.fmt(None, "ms") == "—"
    row = common.Row("g", "n", 50.0, "MiB", 200.0, target="≤ 60 MiB", met=True)
    assert row.ratio == pytest.approx(0.25)
    assert common.Row("g", "n", 5.0, "ms", 0.0).ratio is None
    assert common.Row("g", "n", math.nan, "ms").as_dict()["value"] is None


def test_proc_readings_of_this_process() -> None:
    import os  # noqa: PLC0415

    assert common.proc_rss_bytes(os.getpid()) > 1024 * 1024
    assert common.proc_rss_bytes(os.getpid(), "VmHWM") >= common.proc_rss_bytes(os.getpid())
    assert common.proc_cpu_seconds(os.getpid()) > 0


def test_ceilings_tiny() -> None:
    figures = ceilings.run(quick=True, tiny=True)
    for key in ("sqlite_full_rows_per_s", "sqlite_normal_rows_per_s",
                "mqtt_qos1_big_events_per_s", "mqtt_qos1_small_msgs_per_s",
                "bare_parse_frames_per_s", "json_dumps_per_s", "orjson_dumps_per_s"):
        assert _positive(figures[key]), key
    assert 15_000 <= figures["mqtt_big_message_bytes"] <= 25_000  # 20 KB of 100 events
    _table_ok(ceilings.rows(figures))


def test_bare_parse_counts_frames() -> None:
    assert ceilings.bare_parse(ceilings.em4100_buffer(37)) == 37


def test_footprint_tiny() -> None:
    figures = footprint.run(quick=True, tiny=True)
    assert figures["idle"]["device_ptys_open"] == 4  # the demo devices are really open
    assert _positive(figures["ready_s"])
    assert _positive(figures["bare"]["rss_mib"])
    assert figures["idle"]["rss_max_mib"] > figures["bare"]["rss_mib"]
    assert figures["idle"]["cpu_pct"] >= 0
    assert figures["backlog"]["events"] == 2_000
    assert _positive(figures["backlog"]["rss_max_mib"])
    _table_ok(footprint_rows.rows(figures))


def test_scaling_tiny() -> None:
    figures = scaling.run(quick=True, tiny=True)
    assert "error" not in figures["drain"], figures["drain"]
    points = figures["drain"]["points"]
    assert [p["events"] for p in points] == [1_000, 3_000]
    assert all(_positive(p["events_per_s"]) for p in points)
    assert _positive(points[1]["step_vs_linear"])
    assert len(points[1]["quarter_rates"]) == 4
    assert all(_positive(r) for r in points[1]["quarter_rates"])
    assert [p["skus"] for p in figures["skus"]] == [1_000, 3_000]
    assert all(_positive(p["ledger_facts_per_s"]) and _positive(p["raw_facts_per_s"])
               for p in figures["skus"])
    _table_ok(scaling.rows(figures))


def test_suite_records_a_broken_benchmark_and_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "results" / "latest.json"
    lines: list[str] = []
    document = suite.run_suite(["no_such_benchmark", "ceilings"], "tiny", out,
                               echo=lines.append)
    saved = json.loads(out.read_text())
    assert saved["errors"]
    assert "no_such_benchmark" in saved["errors"][0]
    assert "ok" in saved["raw"]["ceilings"]
    groups = {row["group"] for row in document["rows"]}
    assert groups == {"no_such_benchmark", "ceilings"}
    assert out.with_suffix(".md").read_text().count("| ceilings |") == 8
    assert saved["machine"]["nproc"] >= 1
    assert any("JSON:" in line for line in lines)
    rendered = suite.render(out)
    assert rendered.count("| ceilings |") == 8
    assert "no_such_benchmark" in rendered


def test_adapters_fall_back_to_raw_numbers() -> None:
    rows = suite.rows_for("ledger", {"ok": {"something_else_per_s": 5.0,
                                            "nested": {"p99_ms": 3}}}, {})
    assert [r.name for r in rows] == ["something_else_per_s", "nested.p99_ms"]
    assert "adapter" in rows[0].note
    targets = suite.generic_rows("x", {"targets": {"fast": False, "small": True}})
    assert [r.met for r in targets] == [False, True]
    assert suite.rows_for("x", {"error": "boom"}, {})[0].error == "boom"


def test_child_entry_point_writes_its_result(tmp_path: Path) -> None:
    out = tmp_path / "child.json"
    assert suite.child_main("no_such_benchmark", quick=True, tiny=True, out=out) == 0
    assert "ModuleNotFoundError" in json.loads(out.read_text())["error"]
    assert sys.modules.get("bench.no_such_benchmark") is None


def test_reconnect_bench_measures_a_return_and_spreads_connects(tmp_path: Path) -> None:
    import asyncio  # noqa: PLC0415

    from bench import reconnect  # noqa: PLC0415

    first = asyncio.run(reconnect.first_publish(tmp_path, 1, 1.5, probe=True))
    assert first["trials"] == 1
    assert _positive(first["p99_s"])
    spread = asyncio.run(reconnect.spread(20))
    assert spread["stores"] == 20
    assert 1 <= spread["max_per_100ms"] <= 20
    assert 0 < spread["first_s"] <= spread["p99_s"] <= spread["last_s"]
