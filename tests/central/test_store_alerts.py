"""A store's own ``alert`` facts reach central's alerts (issue 17: ``edge-central alerts``
was empty while the store had recorded oversold alerts)."""

from __future__ import annotations

import orjson
import pytest

from central.core import Core
from central.queries import alerts
from tests.central.conftest import event

TOPIC = "retail/v1/stores/S001/events"


def batch(events: list[dict[str, object]]) -> tuple[str, bytes, bool]:
    return TOPIC, orjson.dumps({"v": 1, "store": "S001", "epoch": "e1", "events": events}), False


def oversold(seq: int) -> dict[str, object]:
    return event(seq, kind="alert", stock=[], data={
        "kind": "oversold", "sku": "A-1", "on_hand": -2, "sale_id": f"s{seq}"})


@pytest.mark.parametrize("odd", [False, True])
def test_store_alert_facts_become_central_alerts_once(core: Core, odd: bool) -> None:
    sale = event(1, "A-1", -3)
    if odd:  # a batch the fast path does not take (a float in data): the general path
        sale["data"] = {"note": 1.5}
    core.process([batch([sale, oversold(2)])])
    core.process([batch([sale, oversold(2)])])  # a resend: duplicates, no second alert
    found = alerts(core.conn, "S001", "oversold", 10)
    assert len(found) == 1, found
    detail = found[0]["detail"]
    assert (detail["source"], detail["seq"], detail["sku"]) == ("store", 2, "A-1")
    assert found[0]["severity"] == "warning"
