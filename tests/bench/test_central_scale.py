"""bench.central_scale's arithmetic: the scaling ratio is the median of alternated pairs
(1, 2, 1, 2 …), each pair's ratio and the load averages beside it. The measuring run
itself (PostgreSQL, worker processes) is too heavy for tests."""

from __future__ import annotations

from typing import Any

from bench import central_scale


def _pair(one: float, two: float, load: float) -> dict[str, Any]:
    def side(workers: int, rate: float) -> dict[str, Any]:
        return {"workers": workers, "events_per_s": rate, "ack_latency_p99_ms": 10.0,
                "loadavg_1m": load}
    return {"fan_in_1": side(1, one), "fan_in_2": side(2, two), "ratio": round(two / one, 3)}


def test_the_scaling_row_is_the_median_of_alternated_pairs() -> None:
    pairs = [_pair(100, 60, 8.7), _pair(100, 180, 3.7), _pair(100, 130, 5.0)]
    figures = {"stores": 10, "events_per_store": 10, "reps": pairs,
               "fan_in_1_median": 100, "fan_in_2_median": 130,
               "scaling_ratio": 1.3, "scaling_ratios": [0.6, 1.8, 1.3],
               "loadavgs": [8.7, 8.7, 3.7, 3.7, 5.0, 5.0],
               "takeover": {"takeover_s": 2.0, "bound_s": 4.0, "lease_ttl_s": 3.0}}
    rows = {row.name: row for row in central_scale.rows(figures)}
    ratio = rows["scaling ratio, 2 workers / 1 (median of pairs)"]
    assert ratio.value == 1.3
    assert "0.60, 1.80, 1.30" in ratio.note
    assert "3.7-8.7" in ratio.note
    assert rows["fan-in, 2 workers"].ratio == 1.3
