"""Smoke test of ``bench.rfid`` at tiny sizes: its figures and table rows (no timing is
asserted: this machine is shared)."""

from __future__ import annotations

import math

from bench import common, rfid, suite


def test_rfid_bench_tiny() -> None:
    figures = rfid.run(tiny=True)
    for key in ("bare_parse_reads_per_s", "count_aggregation_reads_per_s", "count_mib",
                "naive_record_mib", "tally_100k_ms"):
        assert math.isfinite(figures[key])
        assert figures[key] > 0
    assert figures["reads"] >= 5 * figures["tags"]
    rows = suite.rows_for("rfid", {"ok": figures}, {})
    assert [r.error for r in rows] == ["", "", ""]
    assert common.markdown_table(rows).count("\n") == len(rows) + 1
    assert "rfid" in suite.ORDER
