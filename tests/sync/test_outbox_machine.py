"""The go-back-N decisions of PROTOCOL §4.3, on the sans-IO OutboxMachine."""

from __future__ import annotations

import dataclasses

import pytest

from sync.outbox import encode_range
from sync.outbox_machine import (
    AckRegressed,
    BatchRequest,
    ForeignAck,
    GoBack,
    LostHistory,
    MarkAcked,
    OutboxMachine,
)
from sync.store_port import EpochMark
from sync.wire import loads

E1, E2 = "epoch-1", "epoch-2"


def machine(**kw: object) -> OutboxMachine:
    args: dict[str, object] = {"window": 300, "batch_events": 100, "resend_after": 10.0}
    args.update(kw)
    return OutboxMachine(**args)  # type: ignore[arg-type]


def send_all(m: OutboxMachine, now: float = 0.0) -> list[BatchRequest]:
    """Take every batch the window allows, pretending each read returns max_events."""
    sent = []
    while (req := m.next_batch()) is not None:
        last = min(req.after_seq + req.max_events, m.known_last_seq(req.epoch) or 0)
        assert m.on_sent(req.epoch, req.after_seq + 1, last, now)
        sent.append(req)
    return sent


def test_sends_from_stored_watermark_and_fills_the_window() -> None:
    m = machine()
    m.on_epochs([EpochMark(E1, 1000, 120)])
    m.on_connect(0.0)
    reqs = send_all(m)
    assert [(r.after_seq, r.max_events) for r in reqs] == [(120, 100), (220, 100), (320, 100)]
    assert m.outstanding() == 300
    assert m.next_batch() is None  # window full


def test_nothing_sent_while_disconnected_or_caught_up() -> None:
    m = machine()
    m.on_epochs([EpochMark(E1, 50, 50)])
    assert m.next_batch() is None
    m.on_connect(0.0)
    assert m.next_batch() is None


def test_advancing_ack_marks_and_opens_the_window() -> None:
    m = machine()
    m.on_epochs([EpochMark(E1, 1000, 0)])
    m.on_connect(0.0)
    send_all(m)
    assert m.on_ack(E1, 100, live=True, now=1.0) == [MarkAcked(E1, 100)]
    req = m.next_batch()
    assert req == BatchRequest(E1, 300, 100)


def test_retained_ack_on_subscription_advances_but_never_goes_back() -> None:
    m = machine()
    m.on_epochs([EpochMark(E1, 1000, 100)])
    m.on_connect(0.0)
    # retained ack of the same epoch beyond the stored watermark: start from it
    assert m.on_ack(E1, 400, live=False, now=0.0) == [MarkAcked(E1, 400)]
    assert m.next_batch() == BatchRequest(E1, 400, 100)
    m.on_sent(E1, 401, 500, 0.0)
    # the same retained ack replayed again: no go-back
    assert m.on_ack(E1, 400, live=False, now=5.0) == []
    assert m.next_batch() == BatchRequest(E1, 500, 100)
    # an older retained ack: ignored
    assert m.on_ack(E1, 200, live=False, now=5.0) == []
    assert m.stored(E1) == 400


def test_stale_live_ack_goes_back_at_most_once_per_second() -> None:
    m = machine()
    m.on_epochs([EpochMark(E1, 1000, 0)])
    m.on_connect(0.0)
    send_all(m)
    m.on_ack(E1, 100, live=True, now=1.0)
    actions = m.on_ack(E1, 100, live=True, now=1.5)  # does not advance, 200 more outstanding
    assert actions == [GoBack(E1, 101, "ack did not advance")]
    assert m.next_batch() == BatchRequest(E1, 100, 100)
    m.on_sent(E1, 101, 200, 1.5)
    assert m.on_ack(E1, 100, live=True, now=2.0) == []  # within 1 s of the last go-back
    assert m.on_ack(E1, 100, live=True, now=2.6) == [GoBack(E1, 101, "ack did not advance")]


def test_non_advancing_ack_with_nothing_outstanding_is_quiet() -> None:
    m = machine()
    m.on_epochs([EpochMark(E1, 100, 0)])
    m.on_connect(0.0)
    send_all(m)
    assert m.on_ack(E1, 100, live=True, now=1.0) == [MarkAcked(E1, 100)]
    assert m.on_ack(E1, 100, live=True, now=5.0) == []


def test_resend_after_without_progress() -> None:
    m = machine(resend_after=10.0)
    m.on_epochs([EpochMark(E1, 1000, 0)])
    m.on_connect(0.0)
    send_all(m, now=0.0)
    assert m.on_timer(9.9) is None
    assert m.on_timer(10.0) == GoBack(E1, 1, "no progress")
    assert m.gobacks == 1
    assert m.next_batch() == BatchRequest(E1, 0, 100)
    # progress resets the timer
    send_all(m, now=10.0)
    m.on_ack(E1, 50, live=True, now=15.0)
    assert m.on_timer(24.0) is None
    assert m.on_timer(25.0) == GoBack(E1, 51, "no progress")


def test_timer_starts_with_the_first_outstanding_event() -> None:
    m = machine(resend_after=10.0)
    m.on_epochs([EpochMark(E1, 100, 100)])
    m.on_connect(0.0)
    m.on_epochs([EpochMark(E1, 150, 100)])  # new events 100 s after an idle connect
    req = m.next_batch()
    assert req is not None
    assert m.on_sent(E1, 101, 150, 100.0)
    assert m.on_timer(105.0) is None
    assert m.on_timer(110.0) is not None


def test_reconnect_resends_from_base() -> None:
    m = machine()
    m.on_epochs([EpochMark(E1, 1000, 0)])
    m.on_connect(0.0)
    send_all(m)
    m.on_ack(E1, 150, live=True, now=1.0)
    m.on_disconnect()
    assert m.next_batch() is None
    m.on_connect(2.0)
    assert m.next_batch() == BatchRequest(E1, 150, 100)


def test_stale_read_after_go_back_is_not_sent() -> None:
    m = machine()
    m.on_epochs([EpochMark(E1, 1000, 0)])
    m.on_connect(0.0)
    req = m.next_batch()
    assert req is not None
    m.on_sent(E1, 1, 100, 0.0)
    req2 = m.next_batch()
    assert req2 == BatchRequest(E1, 100, 100)
    m.on_ack(E1, 50, live=True, now=1.0)
    m.on_ack(E1, 50, live=True, now=2.5)  # go back to 51 while req2 was being read
    assert not m.on_sent(E1, 101, 200, 2.5)
    assert m.next_batch() == BatchRequest(E1, 50, 100)


def test_older_epochs_first_oldest_first() -> None:
    m = machine()
    m.on_epochs([EpochMark("a", 10, 5), EpochMark("b", 20, 20), EpochMark("c", 30, 0)])
    m.on_connect(0.0)
    assert m.older_epoch_pending()
    req = m.next_batch()
    assert req == BatchRequest("a", 5, 100)
    m.on_sent("a", 6, 10, 0.0)
    # c waits until a's events are acknowledged
    assert m.next_batch() is None
    assert m.on_ack("a", 10, live=True, now=1.0) == [MarkAcked("a", 10)]
    assert not m.older_epoch_pending()
    assert m.next_batch() == BatchRequest("c", 0, 100)


def test_ack_beyond_last_seq_is_lost_history() -> None:
    m = machine()
    m.on_epochs([EpochMark(E1, 40, 30)])
    m.on_connect(0.0)
    send_all(m)
    actions = m.on_ack(E1, 57, live=False, now=1.0)
    assert actions == [LostHistory(E1, 57, 40), MarkAcked(E1, 40)]
    assert m.next_batch() is None  # that epoch is never sent again
    # the new epoch is sent, and the lost one no longer counts as pending
    m.on_epochs([EpochMark(E1, 40, 40), EpochMark(E2, 3, 0)])
    assert not m.older_epoch_pending()
    assert m.next_batch() == BatchRequest(E2, 0, 100)
    assert m.on_ack(E1, 60, live=True, now=2.0) == []


def test_live_ack_below_stored_watermark_resends_and_alerts_once() -> None:
    m = machine()
    m.on_epochs([EpochMark(E1, 1000, 500)])
    m.on_connect(0.0)
    send_all(m)
    actions = m.on_ack(E1, 200, live=True, now=1.0)
    assert actions == [AckRegressed(E1, 200, 500), GoBack(E1, 201, "central went back")]
    assert m.next_batch() == BatchRequest(E1, 200, 100)
    m.on_sent(E1, 201, 300, 1.0)
    # catching up below the stored watermark is progress, not a new alert
    assert m.on_ack(E1, 300, live=True, now=1.2) == []
    assert m.stored(E1) == 500
    assert m.on_ack(E1, 600, live=True, now=1.3) == [MarkAcked(E1, 600)]


def test_foreign_epoch_ack_is_reported_and_changes_nothing() -> None:
    m = machine()
    m.on_epochs([EpochMark(E1, 100, 10)])
    m.on_connect(0.0)
    assert m.on_ack("someone-else", 99, live=False, now=0.0) == [ForeignAck("someone-else", 99)]
    assert m.next_batch() == BatchRequest(E1, 10, 100)


def test_old_epoch_retained_ack_does_not_disturb_the_current_epoch() -> None:
    m = machine()
    m.on_epochs([EpochMark("old", 80, 80), EpochMark("new", 20, 0)])
    m.on_connect(0.0)
    assert m.on_ack("old", 70, live=False, now=0.0) == []
    assert m.on_ack("old", 80, live=True, now=0.0) == []
    assert m.next_batch() == BatchRequest("new", 0, 100)


def test_window_and_batch_validation() -> None:
    with pytest.raises(ValueError, match="batch_events"):
        OutboxMachine(batch_events=1001)
    with pytest.raises(ValueError, match="window"):
        OutboxMachine(window=10, batch_events=100)


def test_encode_range_splices_events_verbatim() -> None:
    payload = encode_range("S001", "ep", b'{"id":"a","seq":1},{"id":"b","seq":2}')
    assert loads(payload) == {
        "v": 1, "store": "S001", "epoch": "ep",
        "events": [{"id": "a", "seq": 1}, {"id": "b", "seq": 2}],
    }
    assert b'{"id":"a","seq":1},{"id":"b","seq":2}' in payload


def test_an_ack_beyond_a_closed_epoch_is_no_lost_history() -> None:
    """A restored backup's epoch is behind central; the newest epoch carries new facts."""
    m = OutboxMachine(window=100, batch_events=10)
    m.on_epochs([EpochMark(E1, 5, 3), EpochMark("e2", 1, 0)])
    m.on_connect(0.0)
    actions = m.on_ack(E1, 10, live=False, now=0.0)
    assert not any(isinstance(a, LostHistory) for a in actions)
    assert actions == [MarkAcked(E1, 5)]
    assert not m.older_epoch_pending()
    batch = m.next_batch()
    assert batch is not None
    assert batch.epoch == "e2"
    # the newest epoch behind central's ack is still a lost history
    assert any(isinstance(a, LostHistory) for a in m.on_ack("e2", 9, live=True, now=0.0))


def test_ack_actions_sharing_a_base_stay_distinct_values() -> None:
    """MarkAcked, ForeignAck and AckRegressed share their ack fields, not their identity:
    the shell dispatches on the type, so equal fields of two types must not compare equal."""
    assert MarkAcked(E1, 7) != ForeignAck(E1, 7)
    assert not isinstance(ForeignAck(E1, 7), MarkAcked)
    assert not isinstance(AckRegressed(E1, 7, 9), MarkAcked | ForeignAck)
    assert AckRegressed(E1, 7, 9) == AckRegressed(epoch=E1, through_seq=7, stored=9)
    assert repr(ForeignAck(E1, 7)) == "ForeignAck(epoch='epoch-1', through_seq=7)"
    assert len({MarkAcked(E1, 7), MarkAcked(E1, 7), ForeignAck(E1, 7)}) == 2
    regressed = AckRegressed(E1, 7, 9)
    for name in ("epoch", "through_seq", "stored"):  # inherited fields stay frozen too
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(regressed, name, 1)
