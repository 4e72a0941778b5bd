"""Smoke test of ``bench.customers`` at a tiny size: figures and table rows, no timing."""

from __future__ import annotations

from bench import common, customers


def test_customers_bench_tiny() -> None:
    figures = customers.run(tiny=True)
    assert figures["customers"] == 2_000
    assert figures["lookups"] == 3_000
    assert figures["db_bytes"] > figures["customers"] * 100
    rows = customers.rows(figures)
    assert len(rows) == 4
    assert all(row.value is not None and row.value > 0 for row in rows)
    assert common.markdown_table(rows).count("\n") == len(rows) + 1
