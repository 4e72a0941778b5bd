"""The small typed interface the store gives to ``sync`` (``sync`` never imports the agent).

``edge_agent.sync_adapter.LedgerStorePort`` implements it over the agent's ledger; tests and
benchmarks may implement it over anything that keeps the same promises:

- every method that changes state commits durably before it returns;
- ``event_range`` returns each event's canonical JSON exactly as recorded (never
  re-encoded), so a resend is byte-identical;
- ``apply_command_batch`` applies in cseq order, each command in one transaction with
  ``applied_cseq`` (PROTOCOL §5.2), and stops after a ``resync`` command.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from sync.messages import Snapshot

CommandStatus = Literal["applied", "flagged", "quarantined", "ignored"]
DeviceStateName = Literal["connected", "disconnected", "error"]


@dataclass(frozen=True, slots=True)
class EpochMark:
    """One epoch of the store's ledger, oldest first; the last one is current."""

    epoch: str
    last_seq: int
    acked_seq: int


@dataclass(frozen=True, slots=True)
class EventRange:
    """Consecutive events as recorded, ready to splice into a batch: seqs ``first_seq`` to
    ``last_seq`` and their canonical JSON joined with commas (the outbox's hot path: no
    object per event)."""

    first_seq: int
    last_seq: int
    joined: bytes

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    cseq: int
    status: CommandStatus
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What ``apply_command_batch`` did. ``resync_requested``: a ``resync`` command was
    applied (its cseq consumed); the caller must resync before acknowledging."""

    applied_cseq: int
    outcomes: tuple[CommandOutcome, ...] = ()
    resync_requested: bool = False


@dataclass(frozen=True, slots=True)
class DigestFigures:
    """PROTOCOL §7 digest of one consistent read."""

    epoch: str
    through_seq: int
    through_cseq: int
    skus: int
    sha256: str


@dataclass(frozen=True, slots=True)
class HealthFigures:
    """Ledger figures for PROTOCOL §8 health."""

    outbox_pending: int
    outbox_oldest_ts: str | None
    db_bytes: int
    wal_bytes: int
    disk_free_bytes: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """One device's state as published on ``…/devices/{device}`` (PROTOCOL §8); built by
    the agent from the reader's :class:`drivers.events.DeviceStatus`."""

    device: str
    kind: str
    state: DeviceStateName
    port: str
    since: str
    reads: int = 0
    errors: int = 0
    detail: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class StorePort(Protocol):
    """What sync needs from the store. All async methods may be called concurrently from
    several sync tasks; implementations serialise writes themselves."""

    @property
    def store_id(self) -> str: ...

    @property
    def current_epoch(self) -> str:
        """Epoch new facts get (changes after ``lost_history``)."""
        ...

    # -- events (§4) ------------------------------------------------------------------
    async def epochs(self) -> Sequence[EpochMark]:
        """Every epoch, oldest first, with last seq and stored watermark."""
        ...

    async def event_range(
        self, epoch: str, after_seq: int, *, max_events: int, max_bytes: int
    ) -> EventRange | None:
        """Events of ``epoch`` with seq > after_seq in seq order, already joined: at most
        ``max_events`` and, beyond the first, at most ``max_bytes`` (commas count); the
        first contiguous run only; None when there is none."""
        ...

    async def mark_acked(self, epoch: str, through_seq: int) -> None:
        """Stored watermark := max(stored, through_seq)."""
        ...

    async def lost_history(self, epoch: str, central_seq: int, local_last_seq: int) -> str:
        """Central acknowledged beyond our last seq (§4.1): start a new epoch, mark a
        resync needed and record an alert event, in one transaction. Returns the new epoch."""
        ...

    async def record_alert(self, kind: str, fields: Mapping[str, Any]) -> None:
        """Append an ``alert`` event of this kind (e.g. ``ack_regressed``)."""
        ...

    async def prune_acked(self, older_than_ts: str) -> int:
        """Delete acknowledged events older than the timestamp; returns how many."""
        ...

    def add_commit_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the event loop after each commit that appended events."""
        ...

    # -- commands (§5) ----------------------------------------------------------------
    async def applied_cseq(self) -> int: ...

    async def has_resynced(self) -> bool:
        """False until the first successful resync of this database (§5.3, §6)."""
        ...

    async def needs_resync(self) -> str | None:
        """The reason a resync is needed (persisted across restarts), or None."""
        ...

    async def request_resync(self, reason: str) -> None:
        """Persist that a resync is needed (e.g. a persisting command gap)."""
        ...

    async def apply_command_batch(self, commands: Sequence[Mapping[str, Any]]) -> BatchOutcome:
        """Apply the commands with cseq = applied+1, … in order (the caller has checked the
        batch is well formed and contiguous); stop after a ``resync`` command."""
        ...

    async def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Apply a §5.3 snapshot in one transaction and clear the resync need."""
        ...

    async def expire_reservations(self) -> int:
        """Release open reservations whose ``expires_at`` passed by the store's clock."""
        ...

    async def next_reservation_expiry(self) -> float | None:
        """Seconds until the earliest open reservation's ``expires_at`` (0 when one is
        due), or None when no open reservation expires."""
        ...

    # -- digest, health, devices (§7, §8) ------------------------------------------------
    async def digest_state(self) -> DigestFigures: ...

    async def health(self) -> HealthFigures: ...

    def device_statuses(self) -> Sequence[DeviceReport]:
        """Current state of every configured device (cheap, in memory)."""
        ...

    def add_device_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the event loop whenever a device status changes."""
        ...

    async def published_devices(self) -> set[str]:
        """Device names whose retained state this store has published (persisted), so a
        device removed from the config can be cleared after a restart."""
        ...

    async def set_published_devices(self, names: set[str]) -> None: ...
