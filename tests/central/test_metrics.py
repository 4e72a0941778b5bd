"""``GET /metrics`` of the central (issue 21, operations): Prometheus text behind the
operator token, with ingest counters, the writer queue, per-store backlog and lag, and
alerts by kind, against a real broker and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.central.conftest import Central, FakeStore, event, wait_until


def scrape(central: Central) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = central.http.get("/metrics", headers=central.admin)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_need_the_operator_token(central: Central) -> None:
    assert central.http.get("/metrics").status_code == 401
    wrong = {"Authorization": "Bearer token-s001"}  # a store's token is not an operator's
    assert central.http.get("/metrics", headers=wrong).status_code == 401


def test_metrics_follow_apply_conflicts_quarantine_and_backlog(
        central: Central, make_store: Callable[[str], FakeStore]) -> None:
    s1, s2 = make_store("S001"), make_store("S002")
    first = [event(1), event(2), event(3)]
    s1.send(first)
    s1.wait_ack(3)
    s1.send([event(2, delta=-5)])  # same seq, other content: a conflict
    s2.send([event(1), {**event(2), "stock": "not a list"}])  # quarantined
    s2.wait_ack(2)
    central.sync()
    m = scrape(central)
    assert m[("edge_central_events_applied_total", ())] == 5
    assert m[("edge_central_events_quarantined_total", ())] == 1
    assert m[("edge_central_conflicts_total", ())] == 1
    assert m[("edge_central_alerts_total", (("kind", "event_conflict"),))] == 1
    assert m[("edge_central_alerts_total", (("kind", "event_quarantined"),))] == 1
    assert m[("edge_central_store_quarantined_events", (("store", "S002"),))] == 1
    assert m[("edge_central_store_backlog_events", (("store", "S001"),))] == 0
    assert m[("edge_central_writer_queue_messages", ())] >= 0
    assert m[("edge_central_writer_queue_bytes", ())] >= 0
    assert m[("edge_central_mqtt_connected", ())] == 1
    assert m[("edge_central_restored", ())] == 0

    # S001 was away: its live birth says it holds seq 9; central applied 3, a backlog of 6
    s1.birth(last_seq=9)
    wait_until(lambda: scrape(central)[("edge_central_store_backlog_events",
                                         (("store", "S001"),))] == 6, what="backlog 6")
    m = scrape(central)
    assert m[("edge_central_store_online", (("store", "S001"),))] == 1
    s1.send([event(seq) for seq in range(4, 10)])
    s1.wait_ack(9)
    wait_until(lambda: scrape(central)[("edge_central_store_backlog_events",
                                         (("store", "S001"),))] == 0, what="caught up")
    m = scrape(central)
    assert m[("edge_central_store_lag_seconds", (("store", "S001"),))] == 0
    assert m[("edge_central_events_applied_total", ())] == 11
