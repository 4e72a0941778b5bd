"""The protocol engine alone (``Core.process``) on a real SQLite file, no broker: batch
well-formedness, one group holding several batches of one store, poison messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from central.core import Core
from central.engine.ingest import _event_batch
from central.runs import stock_cells
from central.storage import Database
from sync.messages import EventBatch
from tests.central.conftest import event

TOPIC = "retail/v1/stores/S001/events"


def batch(events: list[dict[str, Any]], epoch: str = "e1") -> tuple[str, bytes, bool]:
    return TOPIC, orjson.dumps({"v": 1, "store": "S001", "epoch": epoch, "events": events}), False


seqs = st.one_of(st.integers(min_value=-2, max_value=2**53 + 1), st.text(max_size=2),
                 st.none(), st.booleans())
items = st.one_of(st.fixed_dictionaries({"seq": seqs}), st.integers(), st.just({}))


@settings(max_examples=150, deadline=None)
@given(epoch=st.one_of(st.text(max_size=70), st.integers(), st.none()),
       events=st.one_of(st.lists(items, max_size=4),
                        st.builds(lambda n, k: [{"seq": n + i} for i in range(k)],
                                  st.integers(min_value=-1, max_value=5),
                                  st.integers(min_value=0, max_value=4)),
                        st.none()))
def test_fast_batch_check_agrees_with_the_model(epoch: Any, events: Any) -> None:
    obj = {"v": 1, "store": "S001", "epoch": epoch, "events": events}
    try:
        EventBatch.model_validate(obj)
        model_ok = True
    except ValidationError:
        model_ok = False
    assert (_event_batch(obj) is not None) == model_ok


def test_several_batches_of_one_store_in_one_group(core: Core) -> None:
    first = [event(1, "A", -1), event(2, "A", -1)]
    out = core.process([
        batch(first),
        batch([*first, event(3, "A", -1)]),  # overlaps what this same group applied
        batch([event(5, "A", -1)]),  # gap
        batch([event(2, "A", -7)]),  # conflict with an event of this same group
    ])
    acks = [orjson.loads(p.payload) for p in out]
    assert [(a["epoch"], a["through_seq"]) for a in acks] == [("e1", 3)]
    assert stock_cells(core.conn, "S001") == {"A": [-3, 0]}  # the projection may lag
    core.flush_projection()
    assert core.conn.execute("SELECT on_hand FROM stock WHERE sku = 'A'") == [(-3,)]
    kinds = [k for (k,) in core.conn.execute("SELECT kind FROM alerts")]
    assert kinds == ["event_conflict"]


def test_poison_message_is_skipped_without_losing_the_group(core: Core) -> None:
    class Fragile(Core):
        def _on_health(self, *args: Any) -> None:
            raise RuntimeError("bug")

    fragile = Fragile(core.conn)
    health = ("retail/v1/stores/S002/health", orjson.dumps({"v": 1, "store": "S002"}), False)
    out = fragile.process([batch([event(1, "A", -1)]), health,
                           batch([event(2, "A", -1)])])
    assert [orjson.loads(p.payload)["through_seq"] for p in out] == [2]
    assert fragile.conn.execute("SELECT COUNT(*) FROM events") == [(2,)]
    assert fragile.counters().drops == 1


def test_command_go_back_is_rate_limited_and_timed(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/clock.db")
    db.create_schema()
    now = [100.0]
    core = Core(db.connect(), resend_after=10, clock=lambda: now[0])
    status = ("retail/v1/stores/S001/status", orjson.dumps(
        {"v": 1, "store": "S001", "state": "online", "epoch": "e", "boot_id": "b",
         "last_seq": 0, "applied_cseq": 0}), False)

    def ack(through: int) -> tuple[str, bytes, bool]:
        return ("retail/v1/stores/S001/commands/ack", orjson.dumps(
            {"v": 1, "store": "S001", "epoch": "e", "through_cseq": through,
             "ts": "2026-11-25T09:00:00.000Z"}), False)

    def cseqs(out: list[Any]) -> list[int]:
        return [c["cseq"] for p in out for c in orjson.loads(p.payload)["commands"]]

    core.process([status])
    _, out = core.issue("S001", [{"type": "resync"}, {"type": "resync"}, {"type": "resync"}])
    assert cseqs(out) == [1, 2, 3]
    assert cseqs(core.process([ack(1)])) == []  # progress: nothing to resend
    now[0] += 0.5
    assert cseqs(core.process([ack(1)])) == [2, 3]  # no progress: go back
    now[0] += 0.5
    assert cseqs(core.process([ack(1)])) == []  # within a second of the last go-back
    now[0] += 0.6
    assert cseqs(core.process([ack(1)])) == [2, 3]
    now[0] += 5
    assert cseqs(core.tick()) == []  # not yet resend_after without progress
    now[0] += 10
    assert cseqs(core.tick()) == [2, 3]
    assert cseqs(core.process([ack(3)])) == []
    now[0] += 60
    assert cseqs(core.tick()) == []  # all acknowledged


@pytest.mark.parametrize("version", [True, 1.0, "1", 2])
def test_only_the_integer_1_is_version_1(core: Core, version: Any) -> None:
    body = {"v": version, "store": "S001", "epoch": "e1", "events": [event(1, "A", -1)]}
    assert core.process([(TOPIC, orjson.dumps(body), False)]) == []
    assert core.conn.execute("SELECT reason, count FROM drops") == [("unsupported v", 1)]
