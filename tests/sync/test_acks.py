"""The drop rules of an incoming ``events/ack`` (sync.acks), one reason at a time."""

from __future__ import annotations

import pytest

from sync.acks import classify_ack
from sync.messages import EventAck
from sync.wire import MAX_PAYLOAD_BYTES, canonical_json

STORE = "s-001"
GOOD = {"v": 1, "store": STORE, "epoch": "e1", "through_seq": 7, "ts": "2026-12-04T23:00:00.000Z"}


def test_a_well_formed_ack_for_this_store_is_kept() -> None:
    ack = classify_ack(canonical_json(GOOD), STORE)
    assert isinstance(ack, EventAck)
    assert (ack.epoch, ack.through_seq) == ("e1", 7)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b" " * (MAX_PAYLOAD_BYTES + 1), "too_large"),
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "version"),
        (canonical_json({**GOOD, "v": 2}), "version"),
        (canonical_json({**GOOD, "store": "s-002"}), "store"),
        (canonical_json({**GOOD, "through_seq": -1}), "malformed"),
        (canonical_json({k: v for k, v in GOOD.items() if k != "epoch"}), "malformed"),
    ],
)
def test_each_bad_ack_is_dropped_with_its_reason(payload: bytes, reason: str) -> None:
    assert classify_ack(payload, STORE) == reason
