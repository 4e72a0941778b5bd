"""The central's typed fast path (``central.batches.decode_fast``) against the general
path it shortcuts: what it refuses, and, for any mix of good and odd batches, the same
stock, acks, quarantine, alerts and stored events as with the fast path switched off."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import central.engine.ingest as ingest_module
from central.batches import decode_fast, run_body, split_run
from central.core import Core
from central.runs import stock_cells
from central.storage import Database
from sync.wire import MAX_SAFE_INT, canonical_json

TOPIC = "retail/v1/stores/S001/events"


def sale(seq: int, sku: str = "A-1", delta: int = -1, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"seq": seq, "id": f"ev-{seq}", "type": "sale",
                            "ts": "2026-11-25T09:15:02.123Z",
                            "data": {"lines": [{"sku": sku, "qty": -delta}]},
                            "stock": [{"sku": sku, "delta": delta}]}
    body.update(extra)
    return body


def payload(events: list[Any], **envelope: Any) -> bytes:
    body: dict[str, Any] = {"v": 1, "store": "S001", "epoch": "e1", "events": events}
    body.update(envelope)
    return orjson.dumps(body)


def test_a_canonical_batch_is_decoded_with_each_events_bytes() -> None:
    events = [sale(1), sale(2, "B-2", 3, reserve=[{"sku": "B-2", "delta": 1}])]
    raw = b'{"epoch":"e1","events":[' + b",".join(canonical_json(e) for e in events) + \
        b'],"store":"S001","v":1}'
    batch = decode_fast(raw)
    assert batch is not None
    assert (batch.store, batch.epoch, batch.first_seq, batch.heads[-1].seq) == ("S001", "e1", 1, 2)
    assert [bytes(r) for r in batch.raws] == [canonical_json(e) for e in events]
    assert [(d.sku, d.delta) for d in batch.heads[1].stock] == [("B-2", 3)]
    assert [(d.sku, d.delta) for d in batch.heads[1].reserve] == [("B-2", 1)]
    assert split_run(run_body(batch.raws)) == batch.raws


@pytest.mark.parametrize("odd", [
    b"{not json",
    b"[1, 2]",
    payload([sale(1)], v=2),
    payload([sale(1)], v=True),
    payload([sale(1)], v=1.0),
    payload([sale(1)], epoch=""),
    payload([sale(1)], epoch="x" * 65),
    payload([sale(1)], epoch=7),
    payload([]),
    payload([sale(i) for i in range(1, 1002)]),
    payload([sale(1), sale(3)]),
    payload([sale(2), sale(1)]),
    payload([sale(0)]),
    payload([sale(MAX_SAFE_INT + 1)]),
    payload([sale(1, stock=None)]),
    payload([sale(1, stock=[{"sku": "A-1", "delta": True}])]),
    payload([sale(1, stock=[{"sku": "A-1", "delta": 1.5}])]),
    payload([sale(1, stock=[{"sku": "A-1", "delta": MAX_SAFE_INT + 1}])]),
    payload([sale(1, stock=[{"sku": "bad sku", "delta": 1}])]),
    payload([sale(1, stock=[{"sku": "A-1"}])]),
    payload([sale(1, reserve={"sku": "A-1", "delta": 1})]),
    payload([sale(1, type=None)]),
    payload([1]),
    payload([sale(1)]).replace(b'"ev-1"', b'"ev-\xff"'),  # invalid UTF-8 in a skipped string
    payload([sale(1)]).replace(b'"ev-1"', b'"\\ud800"'),  # a lone surrogate
])
def test_anything_odd_is_left_to_the_general_path(odd: bytes) -> None:
    assert decode_fast(odd) is None


# ----------------------------------------------------------------------------- equivalence
skus = st.sampled_from(["A-1", "B-2", "c.3", "bad sku", ""])
deltas = st.one_of(st.integers(-5, 5), st.just(True), st.just("3"), st.just(MAX_SAFE_INT + 1))
lines = st.one_of(
    st.lists(st.fixed_dictionaries({"sku": skus, "delta": deltas}), max_size=3),
    st.lists(st.fixed_dictionaries({"sku": st.sampled_from(["A-1", "B-2"]),
                                    "delta": st.integers(-5, 5)},
                                   optional={"note": st.text(max_size=3)}), max_size=3),
    st.none(), st.just({"sku": "A-1", "delta": 1}),
)
kinds = st.sampled_from(["sale", "count", "fulfilment", "reservation.released", "future.x", 7])
datas = st.one_of(st.just({}), st.just("text"),
                  st.fixed_dictionaries({"reservation_id": st.sampled_from(["r1", "r2"]),
                                         "count_id": st.sampled_from(["c1", 5])}))


@st.composite
def event_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"id": draw(st.text(min_size=1, max_size=4)), "type": draw(kinds),
                            "data": draw(datas)}
    for name in ("stock", "reserve"):
        if draw(st.booleans()):
            body[name] = draw(lines)
    if draw(st.booleans()):
        body = dict(reversed(list(body.items())))  # not canonical: key order differs
    return body


@st.composite
def traffic(draw: st.DrawFn) -> list[bytes]:
    """Batches of one store: in order, overlapping, duplicated, gapped, conflicting."""
    bodies = draw(st.lists(event_bodies(), min_size=1, max_size=12))
    out: list[bytes] = []
    for _ in range(draw(st.integers(1, 6))):
        start = draw(st.integers(1, len(bodies)))
        end = draw(st.integers(start, len(bodies)))
        events = [{"seq": seq, **bodies[seq - 1]} for seq in range(start, end + 1)]
        if draw(st.booleans()) and events:  # a changed resend: a conflict if already applied
            events[0] = {**events[0], "id": events[0]["id"] + "!"}
        out.append(payload(events))
    return out


def run(batches: list[bytes], fast: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, monkeypatch.context() as patch:
        if not fast:
            patch.setattr(ingest_module, "decode_fast", lambda _payload: None)
        db = Database(f"sqlite:///{Path(tmp) / 'c.db'}")
        db.create_schema()
        core = Core(db.connect())
        acks = [orjson.loads(p.payload)["through_seq"]
                for b in batches for p in core.process([(TOPIC, b, False)])]
        conn = core.conn
        result = {
            "acks": acks,
            "stock": stock_cells(conn, "S001"),
            "quarantine": conn.execute("SELECT epoch, seq, reason FROM quarantine ORDER BY seq"),
            "alerts": conn.execute("SELECT kind, detail FROM alerts ORDER BY id"),
            "events": conn.execute("SELECT seq, hash, type, body FROM events ORDER BY seq"),
            "closed": conn.execute("SELECT COUNT(*) FROM reservations"),
            "counters": core.counters(),
        }
        conn.close()
        return result


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(batches=traffic())
def test_fast_path_changes_nothing_but_speed(batches: list[bytes],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(batches, True, monkeypatch) == run(batches, False, monkeypatch)


def test_a_known_mix_takes_both_paths_with_one_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = sale(3, stock=[{"sku": "A-1", "delta": "3"}])
    batches = [
        payload([sale(1), sale(2, "B-2", 4)]),
        payload([sale(1), sale(2, "B-2", 4), bad, sale(4)]),  # overlap + quarantine
        payload([sale(6)]),  # gap
        payload([sale(4, "A-1", -9)]),  # conflict
        payload([{"seq": 5, "type": "fulfilment", "data": {"reservation_id": "r1"},
                  "stock": [{"sku": "A-1", "delta": -1}],
                  "reserve": [{"sku": "A-1", "delta": -1}]}]),
    ]
    assert [decode_fast(b) is not None for b in batches] == [True, False, True, True, True]
    fast, general = run(batches, True, monkeypatch), run(batches, False, monkeypatch)
    assert fast == general
    assert fast["acks"] == [2, 4, 4, 4, 5]
    assert fast["stock"] == {"A-1": [-3, -1], "B-2": [4, 0]}
    assert [kind for kind, _ in fast["alerts"]] == ["event_quarantined", "event_conflict"]


def test_an_unreadable_number_in_data_never_holds_the_stock_back(tmp_path: Path) -> None:
    """§4.3: odd ``data`` is never a reason to skip stock. ``1e400`` (no double holds it)
    is skipped unread by the fast path; the event's stock counts and nothing crashes."""
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.create_schema()
    core = Core(db.connect())
    odd = payload([sale(1), {"seq": 2, "type": "fulfilment", "data": {"reservation_id": "r"},
                             "stock": [{"sku": "A-1", "delta": -1}]}])
    odd = odd.replace(b'"reservation_id":"r"', b'"reservation_id":"r","n":1e400')
    out = core.process([(TOPIC, odd, False)])
    assert orjson.loads(out[0].payload)["through_seq"] == 2
    assert stock_cells(core.conn, "S001") == {"A-1": [-2, 0]}
    core.conn.close()
