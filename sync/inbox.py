"""Command inbox, PROTOCOL §5.2: validation (pure) and the in-order apply shell.

``classify`` decides, without I/O, whether a ``…/commands`` payload is dropped (and why)
or is a well-formed batch. ``CommandInbox.handle`` applies a well-formed batch through the
store port in cseq order and says whether (and with which watermark) to acknowledge.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic

from sync.errors import WireFormatError
from sync.messages import CommandBatch
from sync.store_port import BatchOutcome, StorePort
from sync.wire import MAX_PAYLOAD_BYTES, PROTOCOL_VERSION, loads

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Drop:
    reason: str  # too_large, invalid_json, version, store, malformed


def classify(payload: bytes, store: str) -> CommandBatch | Drop:
    """§5.2 drop rules, in order: size, JSON, ``v``, ``store``, batch shape."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Drop("too_large")
    try:
        obj: Any = loads(payload)
    except WireFormatError:
        return Drop("invalid_json")
    if not isinstance(obj, dict):
        return Drop("malformed")
    if obj.get("v") != PROTOCOL_VERSION or type(obj.get("v")) is not int:
        return Drop("version")
    if obj.get("store") != store:
        return Drop("store")
    try:
        return CommandBatch.model_validate(obj)
    except pydantic.ValidationError:
        return Drop("malformed")


@dataclass(frozen=True, slots=True)
class InboxResult:
    """``ack``: the watermark to publish on ``commands/ack`` (None: publish nothing).
    ``resync``: a resync must run (a ``resync`` command, a persisting gap)."""

    ack: int | None
    resync: str | None = None
    applied: int = 0
    gap: bool = False


@dataclass
class InboxCounters:
    batches: int = 0
    commands_applied: int = 0
    commands_flagged: int = 0
    commands_quarantined: int = 0
    commands_ignored: int = 0
    duplicates: int = 0
    gaps: int = 0
    withheld_for_resync: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


class CommandInbox:
    """Applies command batches in cseq order (one task calls ``handle`` at a time)."""

    def __init__(
        self,
        port: StorePort,
        *,
        resend_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._port = port
        self._gap_limit = 3 * resend_after
        self._clock = clock
        self._gap_since: float | None = None
        self.counters = InboxCounters()

    def drop(self, reason: str) -> None:
        self.counters.dropped[reason] += 1
        log.warning("inbox: command message dropped (%s)", reason)

    async def handle_payload(self, payload: bytes) -> InboxResult | None:
        batch = classify(payload, self._port.store_id)
        if isinstance(batch, Drop):
            self.drop(batch.reason)
            return None
        return await self.handle(batch)

    def gap_expired(self) -> bool:
        """A command gap has persisted past 3 x resend_after (checked on a timer too)."""
        return self._gap_since is not None and self._clock() - self._gap_since >= self._gap_limit

    def clear_gap(self) -> None:
        self._gap_since = None

    async def handle(self, batch: CommandBatch) -> InboxResult:
        self.counters.batches += 1
        if await self._port.needs_resync() is not None:
            # §5.3: until a needed resync succeeds, apply nothing and do not acknowledge
            # (the ack follows the resync).
            self.counters.withheld_for_resync += 1
            return InboxResult(ack=None)
        applied = await self._port.applied_cseq()
        if batch.last_cseq <= applied:
            self.counters.duplicates += 1
            return InboxResult(ack=applied)
        if batch.first_cseq > applied + 1:
            self.counters.gaps += 1
            now = self._clock()
            if self._gap_since is None:
                self._gap_since = now
            if now - self._gap_since >= self._gap_limit:
                self._gap_since = None
                await self._port.request_resync("command gap")
                return InboxResult(ack=None, resync="command gap", gap=True)
            return InboxResult(ack=applied, gap=True)
        self._gap_since = None
        todo = [c for c in batch.commands if c["cseq"] > applied]
        outcome: BatchOutcome = await self._port.apply_command_batch(todo)
        for item in outcome.outcomes:
            if item.status == "applied":
                self.counters.commands_applied += 1
            elif item.status == "flagged":
                self.counters.commands_applied += 1
                self.counters.commands_flagged += 1
            elif item.status == "quarantined":
                self.counters.commands_quarantined += 1
            else:
                self.counters.commands_ignored += 1
        if outcome.resync_requested:
            return InboxResult(ack=None, resync="command", applied=len(outcome.outcomes))
        return InboxResult(ack=outcome.applied_cseq, applied=len(outcome.outcomes))


AckPublisher = Callable[[int], Awaitable[None]]
