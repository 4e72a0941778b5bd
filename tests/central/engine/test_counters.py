"""The engine's counters (``central.engine.state.Counters``) on a real SQLite file: what
``/metrics`` and ``GET /status`` print moves with the messages, a copy is handed out, and
a message skipped as poison leaves the other messages' counts as one clean pass."""

from __future__ import annotations

from typing import Any

import orjson

from central.core import Core
from central.engine.state import Counters
from tests.central.conftest import event

TOPIC = "retail/v1/stores/S001/events"


def batch(events: list[dict[str, Any]], store: str = "S001") -> tuple[str, bytes, bool]:
    return (f"retail/v1/stores/{store}/events",
            orjson.dumps({"v": 1, "store": store, "epoch": "e1", "events": events}), False)


def test_counters_follow_the_messages(core: Core) -> None:
    core.process([batch([event(1, "A", -1), event(2, "A", -1)]),
                  batch([event(2, "A", -1), event(3, "A", -1)]),
                  (TOPIC, b"not json", False)])
    assert core.counters() == Counters(messages=3, events_applied=3, events_duplicate=1,
                                       events_quarantined=0, drops=1, acks=1, groups=1)


def test_counters_are_a_copy(core: Core) -> None:
    seen = core.counters()
    seen.messages += 100
    core.process([batch([event(1, "A", -1)])])
    assert core.counters().messages == 1


def test_a_poison_message_counts_once_as_a_drop(core: Core) -> None:
    class Fragile(Core):
        def _on_health(self, *args: Any) -> bool:
            raise RuntimeError("bug")

    fragile = Fragile(core.conn)
    health = ("retail/v1/stores/S002/health", orjson.dumps({"v": 1, "store": "S002"}), False)
    fragile.process([batch([event(1, "A", -1)]), health, batch([event(2, "A", -1)])])
    # the group ran twice (with and without the poison); only the clean pass counts
    assert fragile.counters() == Counters(messages=2, events_applied=2, events_duplicate=0,
                                          events_quarantined=0, drops=1, acks=1, groups=1)
