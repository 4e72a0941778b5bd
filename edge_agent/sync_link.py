"""The daemon's side of the sync link: sync's settings from the agent's configuration,
the handle the API and CLI use on the running sync (``services.sync``), and a device's
status as sync reports it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from drivers.events import DeviceStatus
from edge_agent import AGENT_NAME
from edge_agent.config import Config
from sync.store import StoreSync
from sync.store_port import DeviceReport
from sync.store_settings import SyncSettings
from sync.wire import format_ts


def sync_settings(config: Config) -> SyncSettings:
    """Map the agent's ``mqtt``, ``central`` and ``sync`` sections onto sync's settings."""
    return SyncSettings(
        broker_url=config.mqtt.url,
        username=config.mqtt_username,
        password=config.mqtt.password,
        client_cert=config.mqtt.client_cert,
        client_key=config.mqtt.client_key,
        ca_file=config.mqtt.ca_file,
        keepalive=config.mqtt.keepalive_s,
        mqtt_protocol=config.mqtt.protocol,
        root_topic=config.mqtt.root,
        central_url=config.central.url,
        central_token=config.central.token,
        central_ca_file=config.central.ca_file,
        snapshot_timeout=config.central.timeout_s,
        resend_after=config.sync.resend_after_s,
        max_inflight_batches=config.sync.window_messages,
        batch_max_events=config.sync.batch_max_events,
        batch_max_bytes=config.sync.batch_max_bytes,
        digest_interval=config.sync.digest_interval_s,
        health_interval=config.sync.health_interval_s,
        retention_days=config.database.event_retention_days,
        backoff_base=config.sync.backoff_initial_s,
        backoff_max=config.sync.backoff_max_s,
        probe_interval=config.sync.probe_interval_s,
        reconnect_spread=config.sync.reconnect_spread_s,
        agent=AGENT_NAME,
    )


class SyncHandle:
    """What the API and CLI may ask of the running sync (``services.sync``)."""

    def __init__(self, store_sync: StoreSync) -> None:
        self._sync = store_sync
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self._sync.connected

    def request_sync_now(self) -> None:
        self._sync.outbox.wake()
        self._sync.request_digest()

    def request_resync(self, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(
            self._sync.resync_now(reason), name="sync.resync-request"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def figures(self) -> dict[str, Any]:
        counters = self._sync.counters
        return {
            "connected": self._sync.connected,
            "stalled_s": round(self._sync.stalled_for, 1),
            "last_ack_at": self._sync.last_ack_at,
            "reconnects": counters.reconnects,
            "clock_offset_ms": self._sync.clock_offset_ms,
            "last_error": self._sync.last_error,
            **{k: v for k, v in vars(counters).items() if k not in {"connected", "reconnects"}},
        }


def device_report(status: DeviceStatus) -> DeviceReport:
    return DeviceReport(
        device=status.name,
        kind=status.kind,
        state=status.state,
        port=status.port,
        since=format_ts_epoch(status.since),
        reads=status.reads,
        errors=status.frames_rejected + status.card_data_rejected,
        detail=status.detail,
        extra={"reconnects": status.reconnects},
    )


def format_ts_epoch(seconds: float) -> str:
    return format_ts(datetime.fromtimestamp(seconds, UTC))
