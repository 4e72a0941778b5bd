"""``StoreSync``: the store side of PROTOCOL v1, supervised.

One ``asyncio.TaskGroup`` with named tasks runs until cancelled:

- ``sync.link``: connect (§6 order: subscribe ``events/ack`` + ``commands``, retained
  birth, then the rest), run the connection's tasks, reconnect with full-jitter capped
  backoff (an authentication failure waits near the cap);
- per connection: ``sync.dispatch`` (incoming messages), ``sync.outbox`` (go-back-N,
  §4.3), ``sync.inbox`` (commands, §5.2), ``sync.digest`` (§7), ``sync.health`` and
  ``sync.devices`` (§8);
- always: ``sync.resync`` (§5.3 snapshot with backoff), ``sync.acks`` (persists event
  watermarks), ``sync.housekeeping`` (prune acknowledged events past retention, expire
  reservations).

Recording a fact never waits for the network: the ledger's commit listener only wakes the
outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from sync.backoff import Backoff, probe_interval, wait_to_reconnect
from sync.errors import AuthenticationFailed, LinkError, SnapshotError, WireFormatError
from sync.inbox import CommandInbox
from sync.link import Link, LinkConfig, LinkSession
from sync.messages import EventAck, Topics
from sync.outbox import OutboxSender
from sync.outbox_machine import AckRegressed, LostHistory, OutboxMachine
from sync.snapshot import SnapshotClient
from sync.store_port import StorePort
from sync.wire import (
    MAX_BATCH_ITEMS,
    MAX_PAYLOAD_BYTES,
    canonical_json,
    format_ts,
    loads,
    now_ts,
    parse_ts,
    utc_now,
)

log = logging.getLogger(__name__)

STALL_AFTER_S = 10.0
"""A publish unanswered this long: the link is reported down (``connected`` false)."""


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


def _json(obj: dict[str, Any]) -> bytes:
    return canonical_json(obj)


class StoreSync:
    """``StoreSync(settings, port)``; ``await run()`` until cancelled."""

    def __init__(self, settings: SyncSettings, port: StorePort, *, boot_id: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.port = port
        self.store = port.store_id
        self.boot_id = boot_id or str(uuid.uuid4())
        self.topics = Topics(settings.root_topic, self.store)
        self._link_up = False
        self._offline_since: float | None = None  # monotonic; None while connected
        self.last_ack_at: str | None = None
        self.last_error: str | None = None
        self._clock = clock
        self._started = clock()
        self._link = Link(
            LinkConfig(
                url=settings.broker_url,
                client_id=settings.client_id or self.store,
                username=settings.username,
                password=settings.password.get_secret_value() if settings.password else None,
                ca_file=settings.ca_file,
                cert_file=settings.client_cert,
                key_file=settings.client_key,
                keepalive=settings.keepalive,
                protocol=settings.mqtt_protocol,
                connect_timeout=settings.connect_timeout,
            )
        )
        self._snapshots = (
            SnapshotClient(
                settings.central_url,
                settings.central_token.get_secret_value() if settings.central_token else None,
                self.store,
                ca_file=settings.central_ca_file,
                timeout=settings.snapshot_timeout,
            )
            if settings.central_url
            else None
        )
        self.machine = OutboxMachine(
            window=max(settings.window_events, settings.batch_max_events),
            batch_events=settings.batch_max_events,
            resend_after=settings.resend_after,
        )
        self.outbox = OutboxSender(
            store=self.store,
            topic=self.topics.events,
            machine=self.machine,
            epochs=port.epochs,
            read_range=lambda e, a, n, b: port.event_range(e, a, max_events=n, max_bytes=b),
            mark_acked=port.mark_acked,
            on_lost_history=self._on_lost_history,
            on_ack_regressed=self._on_ack_regressed,
            batch_bytes=settings.batch_max_bytes,
            max_inflight=settings.max_inflight_batches,
            clock=clock,
        )
        self.inbox = CommandInbox(port, resend_after=settings.resend_after, clock=clock)
        self._link_backoff = Backoff(settings.backoff_base, settings.backoff_max)
        self._resync_backoff = Backoff(settings.backoff_base, settings.backoff_max)
        self._session: LinkSession | None = None
        self._commands: asyncio.Queue[bytes] = asyncio.Queue(maxsize=256)
        self._resync_wanted = asyncio.Event()
        self._resync_idle = asyncio.Event()
        self._digest_due = asyncio.Event()
        self._devices_changed = asyncio.Event()
        self._reservations_changed = asyncio.Event()
        self._offsets: deque[int] = deque(maxlen=15)
        self._dropped: Counter[str] = Counter()
        self._n = Counter[str]()

    # -- public ----------------------------------------------------------------------------
    @property
    def stalled_for(self) -> float:
        """Seconds the broker has left a publish or subscribe unanswered (0: none waits)."""
        session = self._session
        return session.unanswered_for() if session is not None and self._link_up else 0.0

    @property
    def connected(self) -> bool:
        """Connected, and the broker answers: a stalled broker keeps the TCP connection
        up for up to 1.5 keepalives before paho gives up, but it stops answering."""
        return self._link_up and self.stalled_for < STALL_AFTER_S

    @property
    def counters(self) -> SyncCounters:
        o, i, n = self.outbox.counters, self.inbox.counters, self._n
        dropped = dict(self._dropped)
        for reason, count in i.dropped.items():
            dropped[f"commands:{reason}"] = count
        return SyncCounters(
            connected=self.connected,
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
            digests_published=n["digests"],
            events_pruned=n["events_pruned"],
            digest_mismatches_unknown_at_store=0,
            dropped=dropped,
        )

    @property
    def clock_offset_ms(self) -> int | None:
        return int(statistics.median(self._offsets)) if self._offsets else None

    async def resync_now(self, reason: str = "technician") -> None:
        """Ask for a resync and wait until it succeeded (retries with backoff meanwhile)."""
        if self._snapshots is None:
            raise SnapshotError("no central URL is configured: cannot fetch a snapshot")
        await self.port.request_resync(reason)
        self._resync_idle.clear()
        self._resync_wanted.set()
        await self._resync_idle.wait()

    def request_digest(self) -> None:
        """Publish a digest soon (if connected and no older epoch is pending)."""
        self._digest_due.set()

    async def run(self) -> None:
        self.port.add_commit_listener(self.outbox.wake)
        self.port.add_device_listener(self._devices_changed.set)
        self._resync_wanted.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._link_loop(), name="sync.link")
            tg.create_task(self._resync_loop(), name="sync.resync")
            tg.create_task(self._resilient(self.outbox.persist_acks, "acks"), name="sync.acks")
            tg.create_task(self._resilient(self._housekeeping, "housekeeping"),
                           name="sync.housekeeping")

    async def _resilient(self, loop: Callable[[], Awaitable[None]], what: str) -> None:
        """Keep a background loop alive through store errors (e.g. a full disk)."""
        backoff = Backoff(self.settings.backoff_base, self.settings.backoff_max)
        while True:
            try:
                await loop()
            except Exception:
                delay = backoff.next_delay()
                log.exception("sync: %s failed; restarting it in %.1f s", what, delay)
                await asyncio.sleep(delay)

    # -- link ------------------------------------------------------------------------------
    async def _link_loop(self) -> None:
        first = True
        while True:
            try:
                await self._connected_session(first)
                delay = self._link_backoff.next_delay()
            except AuthenticationFailed as exc:
                self._n["auth_failures"] += 1
                self.last_error = str(exc)
                delay = self._link_backoff.max_delay()
                log.error("sync: %s; retrying in %.0f s", exc, delay)  # noqa: TRY400 - no trace needed
            except LinkError as exc:
                self._n["connect_failures"] += 1
                self.last_error = str(exc)
                delay = self._link_backoff.next_delay()
                log.warning("sync: link: %s; retrying in %.1f s", exc, delay)
            except Exception as exc:  # keep the store syncing; unexpected errors logged with trace
                self.last_error = repr(exc)
                delay = self._link_backoff.next_delay()
                if not _only_link_errors(exc):
                    log.exception("sync: connection ended by an error; retrying in %.1f s", delay)
                else:
                    # name the link errors themselves, not "unhandled errors in a TaskGroup"
                    self.last_error = "; ".join(_leaf_messages(exc))
                    log.warning("sync: connection lost (%s); retrying in %.1f s",
                                self.last_error, delay)
            first = False
            self._n["reconnects"] += 1
            await self._wait_to_reconnect(delay)

    async def _wait_to_reconnect(self, delay: float) -> None:
        settings = self.settings
        now = self._clock()
        if self._offline_since is None:
            self._offline_since = now
        interval = probe_interval(now - self._offline_since, settings.probe_interval,
                                  fast_for=settings.probe_fast_for, cap=settings.probe_max)
        if await wait_to_reconnect(
            delay, lambda: self._link.reachable(within=min(2.0, settings.probe_interval)),
            probe_interval=interval, spread=settings.reconnect_spread,
            rng=self._link_backoff.rng,
        ):
            self._link_backoff.reset()

    def _status(self, state: str, **extra: Any) -> bytes:
        obj: dict[str, Any] = {
            "v": 1, "store": self.store, "state": state,
            "epoch": self.port.current_epoch, "boot_id": self.boot_id,
        }
        obj.update(extra)
        return _json(obj)

    async def _birth(self) -> bytes:
        epochs = await self.port.epochs()
        extra: dict[str, Any] = {
            "last_seq": epochs[-1].last_seq if epochs else 0,
            "agent": self.settings.agent,
            "ts": now_ts(),
        }
        if await self.port.has_resynced():
            extra["applied_cseq"] = await self.port.applied_cseq()
        return self._status("online", **extra)

    async def _connected_session(self, first: bool) -> None:
        async with self._link.connect(
            will_topic=self.topics.status, will_payload=self._status("offline")
        ) as session:
            await session.subscribe(self.topics.events_ack, self.topics.commands)
            try:
                await session.publish(self.topics.status, await self._birth(), retain=True)
                if await self.port.has_resynced() and await self.port.needs_resync() is None:
                    # a resync may have completed while we were offline: tell central now
                    await self._publish_commands_ack(session, await self.port.applied_cseq())
                self._session = session
                self._link_up = True
                self._offline_since = None
                self.last_error = None
                self._link_backoff.reset()
                log.info("sync: connected to %s (%s)", self.settings.broker_url,
                         "first" if first else "reconnect")
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._dispatch(session), name="sync.dispatch")
                    tg.create_task(self.outbox.run_connected(session), name="sync.outbox")
                    tg.create_task(self._inbox_loop(session), name="sync.inbox")
                    tg.create_task(self._digest_loop(session), name="sync.digest")
                    tg.create_task(self._health_loop(session), name="sync.health")
                    tg.create_task(self._devices_loop(session), name="sync.devices")
            except asyncio.CancelledError:
                # Clean shutdown: publish the death ourselves (a clean DISCONNECT
                # suppresses the will).
                with contextlib.suppress(LinkError, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await session.publish(
                            self.topics.status, self._status("offline"), retain=True
                        )
                raise
            finally:
                self._link_up = False
                self._session = None

    async def _dispatch(self, session: LinkSession) -> None:
        async for message in session.messages():
            if message.topic == self.topics.events_ack:
                await self._on_ack(message.payload, retained=message.retained)
            elif message.topic == self.topics.commands:
                try:
                    self._commands.put_nowait(message.payload)
                except asyncio.QueueFull:
                    self._dropped["commands:overload"] += 1

    async def _on_ack(self, payload: bytes, *, retained: bool) -> None:
        received = utc_now()
        if not payload:
            return  # a cleared retained ack
        if len(payload) > MAX_PAYLOAD_BYTES:
            self._dropped["events_ack:too_large"] += 1
            return
        try:
            obj = loads(payload)
        except WireFormatError:
            self._dropped["events_ack:invalid_json"] += 1
            return
        if not isinstance(obj, dict) or obj.get("v") != 1:
            self._dropped["events_ack:version"] += 1
            return
        if obj.get("store") != self.store:
            self._dropped["events_ack:store"] += 1
            return
        try:
            ack = EventAck.model_validate(obj)
        except pydantic.ValidationError:
            self._dropped["events_ack:malformed"] += 1
            return
        if not retained:
            self.last_ack_at = format_ts(received)
            with contextlib.suppress(WireFormatError):
                offset = parse_ts(ack.ts) - received
                self._offsets.append(int(offset / timedelta(milliseconds=1)))
        await self.outbox.handle_ack(ack.epoch, ack.through_seq, live=not retained)

    async def _on_lost_history(self, event: LostHistory) -> None:
        await self.port.lost_history(event.epoch, event.central_seq, event.local_last_seq)
        self._resync_idle.clear()
        self._resync_wanted.set()

    async def _on_ack_regressed(self, event: AckRegressed) -> None:
        await self.port.record_alert(
            "ack_regressed",
            {"epoch": event.epoch, "through_seq": event.through_seq, "stored": event.stored},
        )

    # -- commands --------------------------------------------------------------------------
    async def _publish_commands_ack(self, session: LinkSession | None, through: int) -> None:
        if session is None:
            return
        payload = _json({
            "v": 1, "store": self.store, "epoch": self.port.current_epoch,
            "through_cseq": through, "ts": now_ts(),
        })
        await session.publish(self.topics.commands_ack, payload, retain=True)

    async def _inbox_loop(self, session: LinkSession) -> None:
        tick = max(0.05, self.settings.resend_after / 2)
        while True:
            try:
                async with asyncio.timeout(tick):
                    payload = await self._commands.get()
            except TimeoutError:
                if self.inbox.gap_expired():
                    self.inbox.clear_gap()
                    await self.port.request_resync("command gap")
                    self._resync_wanted.set()
                continue
            result = await self.inbox.handle_payload(payload)
            if result is None:
                continue
            if result.resync is not None:
                self._resync_idle.clear()
                self._resync_wanted.set()
            self._reservations_changed.set()  # a new reservation may expire soonest
            if result.ack is not None:
                await self._publish_commands_ack(session, result.ack)

    async def _resync_loop(self) -> None:
        while True:
            await self._resync_wanted.wait()
            self._resync_wanted.clear()
            while (reason := await self.port.needs_resync()) is not None:
                if self._snapshots is None:
                    log.warning("sync: resync needed (%s) but no central URL is configured",
                                reason)
                    break
                try:
                    snapshot = await self._snapshots.fetch()
                    await self.port.apply_snapshot(snapshot)
                except Exception as exc:  # SnapshotError, or the store could not apply it
                    self._n["resync_failures"] += 1
                    self.last_error = str(exc)
                    delay = self._resync_backoff.next_delay()
                    if isinstance(exc, SnapshotError):
                        log.warning("sync: resync (%s) failed: %s; retrying in %.1f s",
                                    reason, exc, delay)
                    else:
                        log.exception("sync: applying the snapshot failed; retrying in %.1f s",
                                      delay)
                    await asyncio.sleep(delay)
                    continue
                self._n["resyncs"] += 1
                self._resync_backoff.reset()
                self.inbox.clear_gap()
                log.info("sync: resynced (%s) through cseq %d", reason, snapshot.through_cseq)
                await self.outbox.refresh()
                self.outbox.wake()
                self._digest_due.set()
                with contextlib.suppress(LinkError):
                    await self._publish_commands_ack(self._session, await self.port.applied_cseq())
            self._resync_idle.set()

    # -- digest, health, devices ---------------------------------------------------------------
    async def _digest_loop(self, session: LinkSession) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.digest_interval):
                    await self._digest_due.wait()
            self._digest_due.clear()
            await self.outbox.refresh()
            if self.machine.older_epoch_pending() or await self.port.needs_resync() is not None:
                continue
            d = await self.port.digest_state()
            await session.publish(self.topics.digest, _json({
                "v": 1, "store": self.store, "epoch": d.epoch, "through_seq": d.through_seq,
                "through_cseq": d.through_cseq, "skus": d.skus, "sha256": d.sha256,
            }))
            self._n["digests"] += 1

    async def health_payload(self) -> bytes:
        h = await self.port.health()
        oldest_age = 0
        if h.outbox_oldest_ts is not None:
            with contextlib.suppress(WireFormatError):
                oldest_age = max(0, int((utc_now() - parse_ts(h.outbox_oldest_ts))
                                        .total_seconds()))
        devices = self.port.device_statuses()
        resynced = await self.port.has_resynced()
        return _json({
            "v": 1, "store": self.store, "ts": now_ts(), "agent": self.settings.agent,
            "uptime_s": int(self._clock() - self._started),
            "outbox_pending": h.outbox_pending, "outbox_oldest_age_s": oldest_age,
            "last_ack_at": self.last_ack_at,
            "applied_cseq": await self.port.applied_cseq() if resynced else None,
            "db_bytes": h.db_bytes, "wal_bytes": h.wal_bytes,
            "disk_free_bytes": h.disk_free_bytes, "clock_offset_ms": self.clock_offset_ms,
            "devices": {
                "connected": sum(1 for d in devices if d.state == "connected"),
                "total": len(devices),
            },
        })

    async def _health_loop(self, session: LinkSession) -> None:
        while True:
            await session.publish(self.topics.health, await self.health_payload(), retain=True)
            await asyncio.sleep(self.settings.health_interval)

    async def _devices_loop(self, session: LinkSession) -> None:
        published: dict[str, bytes] = {}
        known = await self.port.published_devices()
        while True:
            self._devices_changed.clear()
            current = {d.device: d for d in self.port.device_statuses()}
            for name, status in current.items():
                payload = _json({
                    "v": 1, "store": self.store, "device": name, "kind": status.kind,
                    "state": status.state, "port": status.port, "since": status.since,
                    "reads": status.reads, "errors": status.errors, "detail": status.detail,
                })
                if published.get(name) != payload:
                    await session.publish(self.topics.device(name), payload, retain=True)
                    published[name] = payload
            for name in (known | set(published)) - set(current):
                await session.publish(self.topics.device(name), b"", retain=True)
                published.pop(name, None)
            if set(current) != known:
                known = set(current)
                await self.port.set_published_devices(known)
            await self._devices_changed.wait()

    # -- housekeeping ----------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        next_prune = 0.0
        next_expiry = 0.0
        while True:
            now = self._clock()
            if now >= next_prune:
                cutoff = format_ts(utc_now() - timedelta(days=self.settings.retention_days))
                pruned = await self.port.prune_acked(cutoff)
                self._n["events_pruned"] += pruned
                if pruned:
                    log.info("sync: pruned %d acknowledged events older than %s", pruned, cutoff)
                next_prune = now + self.settings.prune_interval
            if now >= next_expiry:
                self._reservations_changed.clear()
                expired = await self.port.expire_reservations()
                if expired:
                    log.info("sync: released %d expired reservations", expired)
                # At the earliest expires_at, not at the next poll: a web order's stock
                # comes back on time (the interval bounds a clock step).
                due = await self.port.next_reservation_expiry()
                wait = self.settings.reservation_check_interval
                next_expiry = self._clock() + (wait if due is None else min(wait, due + 0.01))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(next_prune, next_expiry)
                                               - self._clock())):
                    await self._reservations_changed.wait()
                    next_expiry = 0.0  # commands applied: look again at once


def _leaf_messages(exc: BaseException) -> list[str]:
    if isinstance(exc, BaseExceptionGroup):
        return [m for e in exc.exceptions for m in _leaf_messages(e)]
    return [str(exc) or type(exc).__name__]


def _only_link_errors(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_link_errors(e) for e in exc.exceptions)
    return isinstance(exc, LinkError)
