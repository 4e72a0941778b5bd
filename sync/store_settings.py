"""What the store's sync is given and what it reports: ``SyncSettings`` and ``SyncCounters``.

The agent maps its ``mqtt``, ``central`` and ``sync`` configuration sections onto
:class:`SyncSettings`; :class:`SyncCounters` is a snapshot of
:class:`sync.store.StoreSync`'s counters for ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from sync.wire import MAX_BATCH_ITEMS, MAX_PAYLOAD_BYTES

if TYPE_CHECKING:
    from sync.inbox import InboxCounters
    from sync.outbox import OutboxCounters

__all__ = ["SyncCounters", "SyncSettings"]


class SyncSettings(BaseModel):
    """Everything StoreSync needs; the agent maps its ``mqtt``, ``central`` and ``sync``
    configuration sections onto these fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # mqtt
    broker_url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: SecretStr | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_file: Path | None = None
    keepalive: int = Field(30, ge=5, le=3600)
    connect_timeout: float = Field(15.0, gt=0, le=300)
    client_id: str | None = None  # default: the store id (brokers bind it to the username)
    mqtt_protocol: Literal["5", "3.1.1"] = "5"  # 3.1.1: brokers without MQTT 5 (NATS)
    root_topic: str = Field("retail", pattern=r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64})*$")
    # central (HTTP snapshot)
    central_url: str | None = None
    central_token: SecretStr | None = None
    central_ca_file: Path | None = None
    snapshot_timeout: float = Field(30.0, gt=0, le=600)
    # sync behaviour
    resend_after: float = Field(10.0, gt=0, le=3600)
    # A backlog after an outage drains at ~10^5 events/s with full batches and a window
    # of a few seconds' worth; online, batches are as small as what is pending.
    window_events: int = Field(20_000, ge=1, le=100_000)
    max_inflight_batches: int = Field(8, ge=1, le=20)
    batch_max_events: int = Field(MAX_BATCH_ITEMS, ge=1, le=MAX_BATCH_ITEMS)
    batch_max_bytes: int = Field(MAX_PAYLOAD_BYTES, ge=70_000, le=MAX_PAYLOAD_BYTES)
    digest_interval: float = Field(300.0, gt=0)
    health_interval: float = Field(60.0, gt=0)
    retention_days: float = Field(30.0, ge=0)
    prune_interval: float = Field(3600.0, gt=0)
    reservation_check_interval: float = Field(30.0, gt=0)
    backoff_base: float = Field(0.5, gt=0)
    backoff_max: float = Field(60.0, gt=0)
    # While the broker is unreachable, probe it with a bare TCP connect every
    # uniform(probe/2, probe) seconds; once it answers, reconnect after uniform(0, spread)
    # seconds (a thousand stores returning at once spread their connects over that window).
    probe_interval: float = Field(1.0, gt=0)
    reconnect_spread: float = Field(0.5, ge=0)
    # After probe_fast_for seconds away, the probe interval doubles with every further
    # probe_fast_for seconds, up to probe_max (sync.backoff.probe_interval).
    probe_fast_for: float = Field(300.0, gt=0)
    probe_max: float = Field(15.0, gt=0)
    agent: str = "edge-agent"


@dataclass(frozen=True)
class SyncCounters:
    """A snapshot of StoreSync's counters (for /metrics)."""

    connected: bool
    reconnects: int
    connect_failures: int
    auth_failures: int
    batches_published: int
    events_published: int
    events_acked: int
    acks_received: int
    gobacks: int
    publish_errors: int
    lost_histories: int
    ack_regressions: int
    foreign_acks: int
    commands_applied: int
    commands_flagged: int
    commands_quarantined: int
    command_batches: int
    command_gaps: int
    resyncs: int
    resync_failures: int
    digests_published: int
    events_pruned: int
    # The store cannot see a digest mismatch (central compares, §7): always 0 here; kept
    # so dashboards can show it next to central's stock_mismatch alerts.
    digest_mismatches_unknown_at_store: int
    dropped: dict[str, int] = field(default_factory=dict)

    @classmethod
    def collect(
        cls,
        o: OutboxCounters,
        i: InboxCounters,
        n: Mapping[str, int],
        *,
        connected: bool,
        dropped: Mapping[str, int],
        digests: int,
        events_pruned: int,
    ) -> SyncCounters:
        """The snapshot of the outbox's, the inbox's and the supervisor's own counts ``n``."""
        dropped = dict(dropped)
        for reason, count in i.dropped.items():
            dropped[f"commands:{reason}"] = count
        return cls(
            connected=connected,
            reconnects=n["reconnects"],
            connect_failures=n["connect_failures"],
            auth_failures=n["auth_failures"],
            batches_published=o.batches_published,
            events_published=o.events_published,
            events_acked=o.events_acked,
            acks_received=o.acks_received,
            gobacks=o.gobacks,
            publish_errors=o.publish_errors,
            lost_histories=o.lost_histories,
            ack_regressions=o.ack_regressions,
            foreign_acks=o.foreign_acks,
            commands_applied=i.commands_applied,
            commands_flagged=i.commands_flagged,
            commands_quarantined=i.commands_quarantined,
            command_batches=i.batches,
            command_gaps=i.gaps,
            resyncs=n["resyncs"],
            resync_failures=n["resync_failures"],
            digests_published=digests,
            events_pruned=events_pruned,
            digest_mismatches_unknown_at_store=0,
            dropped=dropped,
        )
