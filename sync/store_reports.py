"""The store's reports on the link: digest (PROTOCOL §7), health and device states (§8).

:class:`StoreReports` builds each payload from the store port and publishes it on the
connection's session: the digest every ``digest_interval`` or on request (never while
an older epoch is pending or a resync is needed), health every ``health_interval``
(retained), each device's state when it changes (retained; an empty payload clears a
device that is gone).  It also keeps what live acks tell about central: the time of
the last one and the median clock offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from sync.errors import WireFormatError
from sync.link import LinkSession
from sync.messages import EventAck, Topics
from sync.outbox import OutboxSender
from sync.store_port import StorePort
from sync.store_settings import SyncSettings
from sync.wire import canonical_json, format_ts, now_ts, parse_ts, utc_now

__all__ = ["StoreReports"]


class StoreReports:
    """Digest, health and device-state payloads of one store, and their loops."""

    def __init__(self, settings: SyncSettings, port: StorePort, topics: Topics, *,
                 outbox: OutboxSender, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._port = port
        self._store = port.store_id
        self._topics = topics
        self._outbox = outbox
        self._clock = clock
        self._started = clock()
        self.digest_due = asyncio.Event()
        self.devices_changed = asyncio.Event()
        self.digests = 0
        self.last_ack_at: str | None = None
        self._offsets: deque[int] = deque(maxlen=15)

    @property
    def clock_offset_ms(self) -> int | None:
        return int(statistics.median(self._offsets)) if self._offsets else None

    def live_ack(self, ack: EventAck, received: datetime) -> None:
        """A live ``events/ack`` arrived at ``received``: the last ack time, central's clock."""
        self.last_ack_at = format_ts(received)
        with contextlib.suppress(WireFormatError):
            offset = parse_ts(ack.ts) - received
            self._offsets.append(int(offset / timedelta(milliseconds=1)))

    async def digest_loop(self, session: LinkSession) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.digest_interval):
                    await self.digest_due.wait()
            self.digest_due.clear()
            await self._outbox.refresh()
            if (self._outbox.machine.older_epoch_pending()
                    or await self._port.needs_resync() is not None):
                continue
            d = await self._port.digest_state()
            await session.publish(self._topics.digest, canonical_json({
                "v": 1, "store": self._store, "epoch": d.epoch, "through_seq": d.through_seq,
                "through_cseq": d.through_cseq, "skus": d.skus, "sha256": d.sha256,
            }))
            self.digests += 1

    async def health_payload(self) -> bytes:
        h = await self._port.health()
        oldest_age = 0
        if h.outbox_oldest_ts is not None:
            with contextlib.suppress(WireFormatError):
                oldest_age = max(0, int((utc_now() - parse_ts(h.outbox_oldest_ts))
                                        .total_seconds()))
        devices = self._port.device_statuses()
        resynced = await self._port.has_resynced()
        return canonical_json({
            "v": 1, "store": self._store, "ts": now_ts(), "agent": self._settings.agent,
            "uptime_s": int(self._clock() - self._started),
            "outbox_pending": h.outbox_pending, "outbox_oldest_age_s": oldest_age,
            "last_ack_at": self.last_ack_at,
            "applied_cseq": await self._port.applied_cseq() if resynced else None,
            "db_bytes": h.db_bytes, "wal_bytes": h.wal_bytes,
            "disk_free_bytes": h.disk_free_bytes, "clock_offset_ms": self.clock_offset_ms,
            "devices": {
                "connected": sum(1 for d in devices if d.state == "connected"),
                "total": len(devices),
            },
        })

    async def health_loop(self, session: LinkSession) -> None:
        while True:
            await session.publish(self._topics.health, await self.health_payload(), retain=True)
            await asyncio.sleep(self._settings.health_interval)

    async def devices_loop(self, session: LinkSession) -> None:
        published: dict[str, bytes] = {}
        known = await self._port.published_devices()
        while True:
            self.devices_changed.clear()
            current = {d.device: d for d in self._port.device_statuses()}
            for name, status in current.items():
                payload = canonical_json({
                    "v": 1, "store": self._store, "device": name, "kind": status.kind,
                    "state": status.state, "port": status.port, "since": status.since,
                    "reads": status.reads, "errors": status.errors, "detail": status.detail,
                })
                if published.get(name) != payload:
                    await session.publish(self._topics.device(name), payload, retain=True)
                    published[name] = payload
            for name in (known | set(published)) - set(current):
                await session.publish(self._topics.device(name), b"", retain=True)
                published.pop(name, None)
            if set(current) != known:
                known = set(current)
                await self._port.set_published_devices(known)
            await self.devices_changed.wait()
