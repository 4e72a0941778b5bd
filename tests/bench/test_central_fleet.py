"""bench.central_fleet's arithmetic: the per-hop split of an ack's latency (the probe's
times beside the stores'), and the CPU the offered load takes. The measuring run itself
(10,000 MQTT sessions) is too heavy for tests."""

from __future__ import annotations

from bench import central_fleet, fleet_probe


def test_hops_split_the_ack_latency_at_the_probe() -> None:
    # store F00000: seq 1 sent at 10.0, seen by the probe at 10.5, acked at the probe at
    # 12.5, taken by the store's loop at 12.6; seq 2 never acknowledged
    out = [{"hops": {"F00000": {1: [10.0, 12.6], 2: [11.0]}}}]
    probe = {"batches": {"F00000": {1: 10.5, 2: 11.2}}, "acks": {"F00000": {1: 12.5}}}
    hops = fleet_probe.hops(out, probe)
    assert hops["samples"] == 2
    assert (hops["acked_at_probe"], hops["acked_at_store"]) == (1, 1)
    assert hops["central_turnaround"]["p99_ms"] == 2000.0
    assert hops["egress"]["p99_ms"] == 100.0
    assert hops["ingress"]["p99_ms"] == 500.0


def test_demand_extrapolates_cpu_per_message_to_the_offered_rate() -> None:
    rates = {"messages_in_per_s": 1000, "cpu_count": 2,
             "cores_used": {"machine": 2.0, "central": 0.3, "broker": 0.1,
                            "store_simulators": 0.2, "probe": 0.0}}
    d = fleet_probe.demand(rates, offered=5000.0, achieved=1000.0)
    assert d["cpu_us_per_message"] == {"central": 300, "broker": 100, "store_simulators": 200}
    assert d["cores_demanded"] == 3.0
    assert d["cores_got"] == 0.6
    rows = central_fleet._bound_rows({"hops": {}, "cpu_demand": d, "central": rates})
    assert rows[-1].value == 3.0
    assert rows[-1].ceiling == 2
    assert fleet_probe.demand({}, 5000.0, 0.0) == {}
