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
outbox. The digest, health and device loops are :class:`sync.store_reports.StoreReports`',
housekeeping is :class:`sync.housekeeping.Housekeeping`, the settings and counters are in
:mod:`sync.store_settings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from sync.acks import classify_ack
from sync.backoff import Backoff, probe_interval, wait_to_reconnect
from sync.errors import AuthenticationFailed, LinkError, SnapshotError
from sync.housekeeping import Housekeeping
from sync.inbox import CommandInbox
from sync.link import Link, LinkConfig, LinkSession
from sync.messages import Topics
from sync.outbox import OutboxSender
from sync.outbox_machine import AckRegressed, LostHistory, OutboxMachine
from sync.snapshot import SnapshotClient
from sync.store_port import StorePort
from sync.store_reports import StoreReports
from sync.store_settings import SyncCounters, SyncSettings
from sync.wire import (
    canonical_json,
    now_ts,
    utc_now,
)

log = logging.getLogger(__name__)

STALL_AFTER_S = 10.0
"""A publish unanswered this long: the link is reported down (``connected`` false)."""


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
        self.last_error: str | None = None
        self._clock = clock
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
        self.reports = StoreReports(settings, port, self.topics, outbox=self.outbox, clock=clock)
        self.housekeeping = Housekeeping(settings, port, clock=clock)
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
        return SyncCounters.collect(
            self.outbox.counters, self.inbox.counters, self._n, connected=self.connected,
            dropped=self._dropped, digests=self.reports.digests,
            events_pruned=self.housekeeping.events_pruned,
        )

    @property
    def last_ack_at(self) -> str | None:
        """When the last live ``events/ack`` arrived (PROTOCOL §2 timestamp), or None."""
        return self.reports.last_ack_at

    @property
    def clock_offset_ms(self) -> int | None:
        return self.reports.clock_offset_ms

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
        self.reports.digest_due.set()

    async def run(self) -> None:
        self.port.add_commit_listener(self.outbox.wake)
        self.port.add_device_listener(self.reports.devices_changed.set)
        self._resync_wanted.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._link_loop(), name="sync.link")
            tg.create_task(self._resync_loop(), name="sync.resync")
            tg.create_task(self._resilient(self.outbox.persist_acks, "acks"), name="sync.acks")
            tg.create_task(self._resilient(self.housekeeping.run, "housekeeping"),
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
            peer_down = False  # the TCP connect itself was refused: skip the first probe
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
                peer_down = exc.unreachable
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
            await self._wait_to_reconnect(delay, peer_down=peer_down)

    async def _wait_to_reconnect(self, delay: float, *, peer_down: bool = False) -> None:
        settings = self.settings
        now = self._clock()
        if self._offline_since is None:
            self._offline_since = now
        interval = probe_interval(now - self._offline_since, settings.probe_interval,
                                  fast_for=settings.probe_fast_for, cap=settings.probe_max)
        if await wait_to_reconnect(
            delay, lambda: self._link.reachable(within=min(2.0, settings.probe_interval)),
            probe_interval=interval, spread=settings.reconnect_spread,
            rng=self._link_backoff.rng, peer_was_down=peer_down,
        ):
            self._link_backoff.reset()

    def _status(self, state: str, **extra: Any) -> bytes:
        obj: dict[str, Any] = {
            "v": 1, "store": self.store, "state": state,
            "epoch": self.port.current_epoch, "boot_id": self.boot_id,
        }
        obj.update(extra)
        return canonical_json(obj)

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
                    tg.create_task(self.reports.digest_loop(session), name="sync.digest")
                    tg.create_task(self.reports.health_loop(session), name="sync.health")
                    tg.create_task(self.reports.devices_loop(session), name="sync.devices")
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
        ack = classify_ack(payload, self.store)
        if isinstance(ack, str):
            self._dropped[f"events_ack:{ack}"] += 1
            return
        if not retained:
            self.reports.live_ack(ack, received)
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
        payload = canonical_json({
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
            self.housekeeping.reservations_changed.set()  # a new one may expire soonest
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
                self.reports.digest_due.set()
                with contextlib.suppress(LinkError):
                    await self._publish_commands_ack(self._session, await self.port.applied_cseq())
            self._resync_idle.set()

def _leaf_messages(exc: BaseException) -> list[str]:
    if isinstance(exc, BaseExceptionGroup):
        return [m for e in exc.exceptions for m in _leaf_messages(e)]
    return [str(exc) or type(exc).__name__]


def _only_link_errors(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_link_errors(e) for e in exc.exceptions)
    return isinstance(exc, LinkError)
