"""The outbox's go-back-N decisions, PROTOCOL §4.3, as a sans-IO state machine.

``OutboxMachine`` holds every decision — what to send next, what an ack means, when to go
back — and does no I/O, so it is unit-tested directly; :mod:`sync.outbox` is its async
shell. The machine answers an ack with :data:`Action` values for the shell to carry out.

Terms, per epoch: ``last_seq`` (the store's last event), ``stored`` (the persisted
watermark, only ever raised), ``base`` (what central is believed to have applied; equals
``stored`` unless central reported a lower position, §4.3 "live ack below its stored
watermark"). On one connection the machine sends one epoch at a time (oldest pending
first) and ``sent`` is the highest seq published on this connection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from sync.store_port import EpochMark
from sync.wire import MAX_BATCH_ITEMS

__all__ = [
    "GOBACK_MIN_INTERVAL",
    "AckRegressed",
    "Action",
    "BatchRequest",
    "ForeignAck",
    "GoBack",
    "LostHistory",
    "MarkAcked",
    "OutboxMachine",
]

GOBACK_MIN_INTERVAL = 1.0
"""§4.3: a go-back on a non-advancing live ack happens at most once per second."""


# --------------------------------------------------------------------------- actions
@dataclass(frozen=True, slots=True)
class _AckedThrough:
    """What an ack says: central applied ``epoch`` through ``through_seq``. The actions
    that carry an ack's position as they received it share these fields."""

    epoch: str
    through_seq: int


@dataclass(frozen=True, slots=True)
class MarkAcked(_AckedThrough):
    """Persist the watermark (``port.mark_acked``)."""


@dataclass(frozen=True, slots=True)
class LostHistory:
    """Central acknowledged beyond the store's last seq for that epoch (§4.1)."""

    epoch: str
    central_seq: int
    local_last_seq: int


@dataclass(frozen=True, slots=True)
class AckRegressed(_AckedThrough):
    """A live ack below the stored watermark: central went back (restored); alert."""

    stored: int


@dataclass(frozen=True, slots=True)
class ForeignAck(_AckedThrough):
    """An ack for an epoch this ledger does not know (e.g. a replaced database)."""


@dataclass(frozen=True, slots=True)
class GoBack:
    epoch: str
    from_seq: int
    reason: str


Action = MarkAcked | LostHistory | AckRegressed | ForeignAck | GoBack


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """Read up to ``max_events`` events of ``epoch`` after ``after_seq`` and send them."""

    epoch: str
    after_seq: int
    max_events: int


@dataclass(slots=True)
class _Epoch:
    epoch: str
    last_seq: int
    stored: int
    base: int
    regressed: bool = False
    lost: bool = False


# --------------------------------------------------------------------------- machine
@dataclass
class OutboxMachine:
    """The go-back-N sender's decisions (pure; time is passed in)."""

    window: int = 5000
    batch_events: int = 500
    resend_after: float = 10.0
    goback_interval: float = GOBACK_MIN_INTERVAL

    connected: bool = False
    sending: str | None = None
    sent: int = 0
    last_progress: float = 0.0
    last_goback: float = -math.inf
    gobacks: int = 0
    _epochs: dict[str, _Epoch] = field(default_factory=dict)
    _order: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_events <= MAX_BATCH_ITEMS:
            raise ValueError("batch_events must be within 1..1000")
        if self.window < self.batch_events:
            raise ValueError("window must hold at least one batch")

    # -- inputs ---------------------------------------------------------------------
    def on_epochs(self, marks: Iterable[EpochMark]) -> None:
        """Refresh from the ledger (oldest first). Watermarks only move up here."""
        for mark in marks:
            state = self._epochs.get(mark.epoch)
            if state is None:
                state = _Epoch(mark.epoch, mark.last_seq, mark.acked_seq, mark.acked_seq)
                self._epochs[mark.epoch] = state
                self._order.append(mark.epoch)
                continue
            state.last_seq = max(state.last_seq, mark.last_seq)
            if mark.acked_seq > state.stored:
                state.stored = mark.acked_seq
                if not state.regressed:
                    state.base = max(state.base, mark.acked_seq)

    def on_connect(self, now: float) -> None:
        """A new connection: nothing is in flight; send from each epoch's base + 1."""
        self.connected = True
        self.sending = None
        self.sent = 0
        self.last_progress = now

    def on_disconnect(self) -> None:
        self.connected = False
        self.sending = None
        self.sent = 0

    def known_last_seq(self, epoch: str) -> int | None:
        state = self._epochs.get(epoch)
        return None if state is None else state.last_seq

    def stored(self, epoch: str) -> int | None:
        state = self._epochs.get(epoch)
        return None if state is None else state.stored

    def base(self, epoch: str) -> int | None:
        state = self._epochs.get(epoch)
        return None if state is None else state.base

    def older_epoch_pending(self) -> bool:
        """True while an epoch other than the newest has unacknowledged events (§7)."""
        return any(
            self._epochs[e].stored < self._epochs[e].last_seq and not self._epochs[e].lost
            for e in self._order[:-1]
        )

    def outstanding(self) -> int:
        if self.sending is None:
            return 0
        return max(0, self.sent - self._epochs[self.sending].base)

    def _target(self) -> _Epoch | None:
        for name in self._order:
            state = self._epochs[name]
            if not state.lost and state.base < state.last_seq:
                return state
        return None

    def next_batch(self) -> BatchRequest | None:
        """The next read to send, or None (window full, nothing pending, not connected)."""
        if not self.connected:
            return None
        target = self._target()
        if target is None:
            return None
        if self.sending != target.epoch:
            current = self._epochs.get(self.sending) if self.sending is not None else None
            if current is not None and not current.lost and self.sent > current.base:
                return None  # an older epoch still has events in flight: wait for its ack
            self.sending = target.epoch
            self.sent = target.base
        self.sent = max(self.sent, target.base)
        room = self.window - (self.sent - target.base)
        if room <= 0 or self.sent >= target.last_seq:
            return None
        return BatchRequest(target.epoch, self.sent, min(self.batch_events, room))

    def on_sent(self, epoch: str, first_seq: int, last_seq: int, now: float) -> bool:
        """Record a batch about to be published. False: the read is stale (a go-back or a
        reconnect happened meanwhile) and the batch must not be sent."""
        if not self.connected or epoch != self.sending or first_seq != self.sent + 1:
            return False
        state = self._epochs[epoch]
        if self.sent <= state.base:
            self.last_progress = now  # the resend timer starts with the first outstanding event
        self.sent = last_seq
        state.last_seq = max(state.last_seq, last_seq)
        return True

    def on_ack(self, epoch: str, through_seq: int, *, live: bool, now: float) -> list[Action]:
        """An ``events/ack``. ``live=False`` for a retained ack replayed on subscription."""
        state = self._epochs.get(epoch)
        if state is None:
            return [ForeignAck(epoch, through_seq)]
        if state.lost:
            return []
        actions: list[Action] = []
        if through_seq > state.last_seq and epoch != self._order[-1]:
            # A closed epoch that central holds further than this database: the store was
            # restored from a backup, which already started a new epoch and asked for a
            # resync (PROTOCOL §4.1). Nothing of it is left to send; no new facts will
            # ever take its seqs, so this is no lost history (no alert, no other epoch).
            return self._nothing_left(state, actions)
        if through_seq > state.last_seq:
            # The caller refreshed on_epochs() before deciding this (events may be newer
            # than our last read), so this is a rolled-back history.
            state.lost = True
            actions.append(LostHistory(epoch, through_seq, state.last_seq))
            return self._nothing_left(state, actions)
        if through_seq > state.base:
            state.base = through_seq
            if through_seq > state.stored:
                state.stored = through_seq
                actions.append(MarkAcked(epoch, through_seq))
            if state.regressed and state.base >= state.stored:
                state.regressed = False
            if self.sending == epoch:
                self.last_progress = now
                self.sent = max(self.sent, through_seq)
            return actions
        if through_seq == state.base:
            if (
                live
                and self.sending == epoch
                and self.sent > state.base
                and now - self.last_goback >= self.goback_interval
            ):
                actions.append(self._go_back(state, now, "ack did not advance"))
            return actions
        # through_seq < base
        if not live:
            return []  # a stale retained ack (e.g. kept by a broker) never moves us back
        if through_seq < state.stored and not state.regressed:
            state.regressed = True
            actions.append(AckRegressed(epoch, through_seq, state.stored))
        state.base = through_seq
        if self.sending == epoch:
            actions.append(self._go_back(state, now, "central went back"))
        return actions

    def _nothing_left(self, state: _Epoch, actions: list[Action]) -> list[Action]:
        """Central holds ``state`` at or past its last seq: nothing of it is left to send;
        persist its last seq as acknowledged (appended to ``actions``) and stop sending it."""
        if state.last_seq > state.stored:
            state.stored = state.last_seq
            actions.append(MarkAcked(state.epoch, state.last_seq))
        state.base = state.last_seq
        if self.sending == state.epoch:
            self.sending = None
            self.sent = 0
        return actions

    def on_timer(self, now: float) -> GoBack | None:
        """Go back when the ack has not moved for ``resend_after`` with events outstanding."""
        if not self.connected or self.sending is None:
            return None
        state = self._epochs[self.sending]
        if self.sent > state.base and now - self.last_progress >= self.resend_after:
            return self._go_back(state, now, "no progress")
        return None

    def _go_back(self, state: _Epoch, now: float, reason: str) -> GoBack:
        self.sent = state.base
        self.last_goback = now
        self.last_progress = now
        self.gobacks += 1
        return GoBack(state.epoch, state.base + 1, reason)
