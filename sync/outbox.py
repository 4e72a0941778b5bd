"""Outbox sender, PROTOCOL §4.3 (go-back-N): a sans-IO state machine and a thin async shell.

``OutboxMachine`` holds every decision — what to send next, what an ack means, when to go
back — and does no I/O, so it is unit-tested directly. ``OutboxSender`` feeds it the
ledger's epochs and the acks from the link, reads events, publishes batches and persists
watermarks.

Terms, per epoch: ``last_seq`` (the store's last event), ``stored`` (the persisted
watermark, only ever raised), ``base`` (what central is believed to have applied; equals
``stored`` unless central reported a lower position, §4.3 "live ack below its stored
watermark"). On one connection the machine sends one epoch at a time (oldest pending
first) and ``sent`` is the highest seq published on this connection.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from sync.store_port import EpochMark, EventRange
from sync.wire import MAX_BATCH_ITEMS, MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)

GOBACK_MIN_INTERVAL = 1.0
"""§4.3: a go-back on a non-advancing live ack happens at most once per second."""


# --------------------------------------------------------------------------- actions
@dataclass(frozen=True, slots=True)
class MarkAcked:
    """Persist the watermark (``port.mark_acked``)."""

    epoch: str
    through_seq: int


@dataclass(frozen=True, slots=True)
class LostHistory:
    """Central acknowledged beyond the store's last seq for that epoch (§4.1)."""

    epoch: str
    central_seq: int
    local_last_seq: int


@dataclass(frozen=True, slots=True)
class AckRegressed:
    """A live ack below the stored watermark: central went back (restored); alert."""

    epoch: str
    through_seq: int
    stored: int


@dataclass(frozen=True, slots=True)
class ForeignAck:
    """An ack for an epoch this ledger does not know (e.g. a replaced database)."""

    epoch: str
    through_seq: int


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
            if state.last_seq > state.stored:
                state.stored = state.last_seq
                actions.append(MarkAcked(epoch, state.last_seq))
            state.base = state.last_seq
            if self.sending == epoch:
                self.sending = None
                self.sent = 0
            return actions
        if through_seq > state.last_seq:
            # The caller refreshed on_epochs() before deciding this (events may be newer
            # than our last read), so this is a rolled-back history.
            state.lost = True
            actions.append(LostHistory(epoch, through_seq, state.last_seq))
            if state.last_seq > state.stored:
                state.stored = state.last_seq
                actions.append(MarkAcked(epoch, state.last_seq))
            state.base = state.last_seq
            if self.sending == epoch:
                self.sending = None
                self.sent = 0
            return actions
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


# --------------------------------------------------------------------------- encoding
def encode_range(store: str, epoch: str, joined: bytes) -> bytes:
    """An event batch around events already joined with commas, spliced in verbatim (§4.2).
    Keys are in sorted order, so the envelope is canonical too."""
    return b"".join(
        (
            b'{"epoch":',
            orjson.dumps(epoch),
            b',"events":[',
            joined,
            b'],"store":',
            orjson.dumps(store),
            b',"v":1}',
        )
    )


ENVELOPE_ALLOWANCE = 512
"""Bytes kept free in a batch for the envelope around the events."""


# --------------------------------------------------------------------------- shell
class Publisher(Protocol):
    """What the shell needs from the link (a ``sync.link.LinkSession``)."""

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1
    ) -> None: ...


@dataclass
class OutboxCounters:
    batches_published: int = 0
    events_published: int = 0
    events_acked: int = 0
    gobacks: int = 0
    acks_received: int = 0
    foreign_acks: int = 0
    lost_histories: int = 0
    ack_regressions: int = 0
    publish_errors: int = 0


class OutboxSender:
    """Async shell around :class:`OutboxMachine` for one store.

    ``run_connected(publish)`` runs while a connection is up; ``handle_ack`` is called by
    the link's dispatcher; ``wake`` by the ledger's commit listener (never blocks a writer).
    """

    def __init__(
        self,
        *,
        store: str,
        topic: str,
        machine: OutboxMachine,
        epochs: Callable[[], Awaitable[Sequence[EpochMark]]],
        read_range: Callable[[str, int, int, int], Awaitable[EventRange | None]],
        mark_acked: Callable[[str, int], Awaitable[None]],
        on_lost_history: Callable[[LostHistory], Awaitable[None]],
        on_ack_regressed: Callable[[AckRegressed], Awaitable[None]],
        batch_bytes: int,
        max_inflight: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 70_000 <= batch_bytes <= MAX_PAYLOAD_BYTES:
            raise ValueError("batch_bytes must be within 70000..1048576")
        self.store = store
        self.topic = topic
        self.machine = machine
        self._epochs = epochs
        self._read_range = read_range
        self._mark_acked = mark_acked
        self._on_lost_history = on_lost_history
        self._on_ack_regressed = on_ack_regressed
        self._batch_bytes = batch_bytes
        self._max_inflight = max_inflight
        self._clock = clock
        self.counters = OutboxCounters()
        self._wake = asyncio.Event()
        self._dirty: dict[str, int] = {}
        self._dirty_event = asyncio.Event()

    # -- inputs ---------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    async def refresh(self) -> None:
        self.machine.on_epochs(await self._epochs())

    async def handle_ack(self, epoch: str, through_seq: int, *, live: bool) -> None:
        self.counters.acks_received += 1
        known = self.machine.known_last_seq(epoch)
        if known is None or through_seq > known:
            await self.refresh()  # events newer than our last read, or a new epoch
        before = self.machine.base(epoch)
        for action in self.machine.on_ack(epoch, through_seq, live=live, now=self._clock()):
            await self._act(action)
        after = self.machine.base(epoch)
        if before is not None and after is not None and after > before:
            self.counters.events_acked += after - before
        self._wake.set()

    async def _act(self, action: Action) -> None:
        if isinstance(action, MarkAcked):
            self._dirty[action.epoch] = max(self._dirty.get(action.epoch, 0), action.through_seq)
            self._dirty_event.set()
        elif isinstance(action, GoBack):
            self.counters.gobacks += 1
            log.info("outbox: go back to %s/%d (%s)", action.epoch, action.from_seq, action.reason)
        elif isinstance(action, LostHistory):
            self.counters.lost_histories += 1
            log.error(
                "outbox: central acknowledged %s/%d beyond our last seq %d: lost history",
                action.epoch, action.central_seq, action.local_last_seq,
            )
            await self._on_lost_history(action)
            await self.refresh()
        elif isinstance(action, AckRegressed):
            self.counters.ack_regressions += 1
            log.warning(
                "outbox: live ack %s/%d below stored watermark %d: resending",
                action.epoch, action.through_seq, action.stored,
            )
            await self._on_ack_regressed(action)
        else:
            self.counters.foreign_acks += 1
            log.info("outbox: ack for unknown epoch %s ignored", action.epoch)

    # -- tasks ----------------------------------------------------------------------
    async def persist_acks(self) -> None:
        """Persist watermarks, coalesced: a late persist only causes harmless resends."""
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            dirty, self._dirty = self._dirty, {}
            try:
                for epoch, through in dirty.items():
                    await self._mark_acked(epoch, through)
            except BaseException:
                for epoch, through in dirty.items():  # keep them for the next attempt
                    self._dirty[epoch] = max(self._dirty.get(epoch, 0), through)
                self._dirty_event.set()
                raise

    async def flush_acks(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for epoch, through in dirty.items():
            await self._mark_acked(epoch, through)

    async def run_connected(self, publisher: Publisher) -> None:
        """Send until cancelled or a publish fails (then the link reconnects)."""
        machine = self.machine
        machine.on_connect(self._clock())
        await self.refresh()
        inflight = asyncio.Semaphore(self._max_inflight)
        tick = max(0.05, min(1.0, machine.resend_after / 4))
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    goback = machine.on_timer(self._clock())
                    if goback is not None:
                        await self._act(goback)
                    sent_any = await self._pump(tg, publisher, inflight)
                    if sent_any:
                        await asyncio.sleep(0)
                        continue
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(tick):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    await self.refresh()
        finally:
            machine.on_disconnect()

    async def _pump(
        self,
        tg: asyncio.TaskGroup,
        publisher: Publisher,
        inflight: asyncio.Semaphore,
    ) -> bool:
        request = self.machine.next_batch()
        if request is None:
            return False
        await inflight.acquire()
        try:
            found = await self._read_range(
                request.epoch,
                request.after_seq,
                request.max_events,
                self._batch_bytes - ENVELOPE_ALLOWANCE,
            )
        except BaseException:
            inflight.release()
            raise
        if found is None or not self.machine.on_sent(
            request.epoch, found.first_seq, found.last_seq, self._clock()
        ):
            inflight.release()
            if found is None:
                await self.refresh()
                return False
            return True
        payload = encode_range(self.store, request.epoch, found.joined)
        tg.create_task(
            self._publish(publisher, payload, found.count, inflight),
            name=f"sync.outbox.publish[{request.epoch[:8]}:{found.first_seq}]",
        )
        return True

    async def _publish(
        self,
        publisher: Publisher,
        payload: bytes,
        count: int,
        inflight: asyncio.Semaphore,
    ) -> None:
        try:
            await publisher.publish(self.topic, payload, qos=1)
        except Exception as exc:
            # Unknown, not lost: the events stay pending; the reconnect resends from base.
            # The exception ends the connection's task group, so the link reconnects.
            self.counters.publish_errors += 1
            log.info("outbox: publish raised (%s); outcome unknown, events stay pending", exc)
            raise
        else:
            self.counters.batches_published += 1
            self.counters.events_published += count
        finally:
            inflight.release()
