"""The outbox's async shell, PROTOCOL §4.3: reads events, publishes batches, persists acks.

``OutboxSender`` feeds :class:`sync.outbox_machine.OutboxMachine` (every go-back-N
decision, no I/O) the ledger's epochs and the acks from the link, reads the events it
asks for, publishes them as batches (:func:`encode_range`) and persists watermarks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from sync.outbox_machine import (
    AckRegressed,
    Action,
    GoBack,
    LostHistory,
    MarkAcked,
    OutboxMachine,
)
from sync.store_port import EpochMark, EventRange
from sync.wire import MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)


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
