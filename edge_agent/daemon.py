"""``edge-agent run``: the supervisor that wires the store together.

One ``asyncio.TaskGroup``, every task named. The ledger is opened (and checked) before
the loop starts; devices feed the router; the router feeds retail scan modes, the
visitors engine and the live hub; sync publishes what the ledger committed. SIGTERM and
SIGINT stop the group; the ledger then finishes every queued commit before it closes.
The systemd watchdog is fed only while the ledger writer answers and the loop runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from drivers import (
    BeaconEvent,
    DeviceEvent,
    DeviceReader,
    DeviceStateEvent,
    DoorEvent,
    RejectedInput,
    ScanEvent,
    TagEvent,
    open_reader,
)
from drivers.events import DeviceStatus
from edge_agent.api.app import create_app
from edge_agent.api.server import serve_api
from edge_agent.config import Config, DeviceConfig
from edge_agent.errors import EdgeAgentError
from edge_agent.ledger import Ledger
from edge_agent.logs import configure_logging
from edge_agent.memory import trim_heap
from edge_agent.notify import SystemdNotifier, watchdog_interval_s
from edge_agent.retail.scanmodes import ScanModes
from edge_agent.retail.service import RetailService
from edge_agent.rfid.engine import RfidEngine
from edge_agent.services import AgentServices
from edge_agent.sync_adapter import LedgerStorePort
from edge_agent.sync_link import SyncHandle, device_report, sync_settings
from edge_agent.visitors.engine import VisitorsEngine
from sync.store import StoreSync
from sync.wire import format_ts

log = structlog.get_logger("edge_agent.daemon")

# The watchdog is fed only if a no-op write round-trips through the ledger writer in time.
LEDGER_PROBE_TIMEOUT_S = 10.0
HOUSEKEEPING_INTERVAL_S = 3600.0
IDEMPOTENCY_KEEP = timedelta(days=7)


class _ShutdownRequested(Exception):
    """Raised inside the task group to stop it."""


def _spawn(tg: asyncio.TaskGroup, coro: Coroutine[Any, Any, None], name: str) -> None:
    """A named task whose log lines carry ``task=<name>`` (each task has its own context)."""

    async def bound() -> None:
        structlog.contextvars.bind_contextvars(task=name)
        await coro

    tg.create_task(bound(), name=name)


class _LiveStatuses(Mapping[str, DeviceStatus]):
    """Device statuses read from the readers when asked, so counters are always current."""

    def __init__(self, readers: Mapping[str, tuple[DeviceConfig, DeviceReader]]) -> None:
        self._readers = readers

    def __getitem__(self, name: str) -> DeviceStatus:
        return self._readers[name][1].status

    def __iter__(self) -> Iterator[str]:
        return iter(self._readers)

    def __len__(self) -> int:
        return len(self._readers)


class Agent:
    """The running store agent. ``await Agent(config, ledger).run()`` until stopped."""

    def __init__(self, config: Config, ledger: Ledger,
                 notifier: SystemdNotifier | None = None) -> None:
        self.config = config
        self.services = AgentServices(config=config, ledger=ledger)
        self.notifier = notifier or SystemdNotifier()
        self._events: asyncio.Queue[tuple[DeviceConfig, DeviceEvent]] = asyncio.Queue(
            maxsize=10_000
        )
        self._readers: dict[str, tuple[DeviceConfig, DeviceReader]] = {}
        self._port = LedgerStorePort(ledger)
        self._stop = asyncio.Event()
        self._scan_handler: Callable[[Any, ScanEvent], Awaitable[None]] | None = None
        self._presence_handler: Callable[[Any, Any], None] | None = None
        self._rfid_handler: Callable[[Any, TagEvent], None] | None = None
        self._rfid_scan: Callable[[str, str], Awaitable[bool]] | None = None
        self._api_ready = asyncio.Event()
        self._extra_tasks: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []

    # -- wiring --------------------------------------------------------------------------
    def _open_devices(self) -> None:
        for device in self.config.devices:
            if not device.enabled:
                continue
            # the default card filter: exact on GTINs, no catalog needed (drivers.carddata)
            reader = open_reader(device, self._emitter(device))
            self._readers[device.name] = (device, reader)
        self.services.device_statuses = _LiveStatuses(self._readers)
        self._port = LedgerStorePort(
            self.services.ledger,
            [device_report(reader.status) for _, reader in self._readers.values()],
        )

    def _emitter(self, device: DeviceConfig) -> Callable[[DeviceEvent], None]:
        def emit(event: DeviceEvent) -> None:
            try:
                self._events.put_nowait((device, event))
            except asyncio.QueueFull:
                self.services.count("device_events_dropped")

        return emit

    def stop(self) -> None:
        self._stop.set()

    def add_task(self, name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``factory()`` as a named task of the supervisor (before :meth:`run`).

        Its failure stops the agent like any core task's; used by embedders and the chaos
        harness to run work inside the agent's process and loop."""
        self._extra_tasks.append((name, factory))

    async def run(self) -> None:
        self._open_devices()
        store_sync = StoreSync(sync_settings(self.config), self._port,
                               boot_id=self.services.boot_id)
        self.services.sync = SyncHandle(store_sync)
        await self._setup_surfaces()
        try:
            async with asyncio.TaskGroup() as tg:
                for name, (_, reader) in self._readers.items():
                    _spawn(tg, reader.run(), f"driver[{name}].read")
                _spawn(tg, self._route(), "router")
                _spawn(tg, store_sync.run(), "sync")
                for name, factory in self._extra_tasks:
                    _spawn(tg, factory(), name)
                _spawn(tg, self._watchdog(), "watchdog")
                _spawn(tg, self._until_stopped(), "shutdown")
                await self._api_ready.wait()  # READY means POS software can connect
                release_startup_garbage()
                self.services.state = "running"
                self.notifier.ready(f"store {self.config.store.id} running")
                log.info("agent running", store=self.config.store.id,
                         epoch=self.services.ledger.current_epoch,
                         devices=len(self._readers), boot_id=self.services.boot_id)
        except* _ShutdownRequested:
            pass
        finally:
            self.services.state = "stopping"

    async def _setup_surfaces(self) -> None:
        """Hook up the parts that live in their own packages (retail, visitors, API)."""
        config = self.config
        retail = RetailService(self.services.ledger, config.store, controls=config.controls,
                               hub=self.services.hub)
        self._scan_handler = ScanModes(self.services, retail).handle_scan
        engine = VisitorsEngine(self.services)
        await engine.start()  # closes visits left open by the last run
        self._presence_handler = engine.handle
        self._extra_tasks.append(("visitors", engine.run))
        rfid = RfidEngine(self.services, retail=retail)
        await rfid.start()  # aborts counts left open by the last run
        self._rfid_handler = rfid.handle
        self._rfid_scan = rfid.control_scan
        self._extra_tasks.append(("rfid", rfid.run))
        self._extra_tasks.append(("housekeeping", lambda: self._housekeeping(retail)))
        app = create_app(self.services, retail=retail)
        self._extra_tasks.append(
            ("api", lambda: serve_api(app, config.api, ready=self._api_ready)))

    async def _until_stopped(self) -> None:
        await self._stop.wait()
        self.notifier.stopping()
        log.info("agent stopping")
        raise _ShutdownRequested

    # -- routing -------------------------------------------------------------------------
    async def _route(self) -> None:
        while True:
            device, event = await self._events.get()
            try:
                await self._route_one(device, event)
            except EdgeAgentError as exc:
                self.services.count("route_errors")
                log.warning("device event refused", device=device.name, error=str(exc))
            except Exception:
                self.services.count("route_errors")
                log.exception("device event failed", device=device.name)

    async def _route_one(self, device: DeviceConfig, event: DeviceEvent) -> None:
        hub = self.services.hub
        if isinstance(event, DeviceStateEvent):
            _, reader = self._readers[device.name]
            self._port.set_device_status(device_report(reader.status))
            hub.publish("device", {"device": device.name, "state": event.state,
                                   "detail": event.detail})
        elif isinstance(event, ScanEvent):
            self.services.count("scans")
            if self._rfid_scan is not None and await self._rfid_scan(device.name, event.code):
                return  # an RFID count control barcode (rfid.count_barcode, ...)
            if self._scan_handler is not None and device.mode is not None:
                await self._scan_handler(device, event)
            else:
                hub.publish("scan", {"device": device.name, "code": event.code,
                                     "symbology": event.symbology})
        elif isinstance(event, TagEvent | BeaconEvent | DoorEvent):
            if isinstance(event, DoorEvent):
                hub.publish("door", {"device": device.name, "direction": event.direction,
                                     "count": event.count})
            else:
                # Raw tag and beacon ids never leave the process, not even to the hub.
                hub.publish("presence", {"device": device.name, "present": event.present})
            # Merchandise tags of inventory, door and till UHF readers: counts, exit alerts,
            # baskets.
            if isinstance(event, TagEvent) and self._rfid_handler is not None and (
                    device.role in ("inventory", "door")
                    or (device.role is None and device.mode == "sale")):
                self._rfid_handler(device, event)
                if device.role == "inventory":
                    return
            # A door counter is a door even when its entry says no role.
            if self._presence_handler is not None and (
                    device.role is not None or isinstance(event, DoorEvent)):
                self._presence_handler(device, event)
        elif isinstance(event, RejectedInput):
            self.services.count(f"rejected_{event.reason}")
            hub.publish("rejected", {"device": device.name, "reason": event.reason})

    async def _housekeeping(self, retail: RetailService) -> None:
        """Hourly: forget idempotency keys older than a week (a POS retrying after a long
        outage within that week still gets its original answer)."""
        while True:
            cutoff = format_ts(datetime.now(UTC) - IDEMPOTENCY_KEEP)
            try:
                removed = await retail.prune_idempotency_keys(cutoff)
            except EdgeAgentError as exc:
                log.warning("housekeeping failed", error=str(exc))
            else:
                if removed:
                    log.info("idempotency keys pruned", removed=removed)
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)

    # -- watchdog ------------------------------------------------------------------------
    async def _watchdog(self) -> None:
        interval = watchdog_interval_s()
        period = interval if interval is not None else 15.0
        while True:
            started = time.monotonic()
            try:
                async with asyncio.timeout(LEDGER_PROBE_TIMEOUT_S):
                    await self.services.ledger.write(lambda tx: None)
            except TimeoutError:
                log.error("ledger writer did not answer; withholding the watchdog ping")  # noqa: TRY400 - a timeout, no traceback worth showing
            else:
                if interval is not None:
                    self.notifier.watchdog()
                self.notifier.status(self._status_line())
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    def _status_line(self) -> str:
        sync = self.services.sync
        link = "online" if sync is not None and sync.connected else "offline"
        connected = sum(1 for s in self.services.device_statuses.values()
                        if s.state == "connected")
        return f"{link}; devices {connected}/{len(self.services.device_statuses)}"


def release_startup_garbage() -> None:
    """Give back what start-up allocated and dropped (glibc keeps freed pages), move the
    long-lived start-up objects out of the collector's way, and turn the collector back
    on (`edge-agent run` starts with it off: imports create ~125k objects and free almost
    none, so its passes then only cost CPU)."""
    gc.collect()
    gc.freeze()
    gc.enable()
    trim_heap()


def run_daemon(config: Config) -> int:
    """Open the ledger, run the agent until SIGTERM/SIGINT, close everything. Exit code."""
    configure_logging(config.logging.level, config.logging.format)
    notifier = SystemdNotifier()
    try:
        ledger = Ledger.open(config.database.path, config.store.id)
    except EdgeAgentError as exc:
        log.error("cannot open the ledger", error=str(exc))  # noqa: TRY400 - the message is the diagnosis
        notifier.notify(f"STATUS=failed: {exc}")
        return 4
    try:
        return asyncio.run(_main(config, ledger, notifier))
    finally:
        gc.enable()  # if the agent stopped before READY
        ledger.close()  # finishes every queued commit first
        notifier.close()


async def _main(config: Config, ledger: Ledger, notifier: SystemdNotifier) -> int:
    agent = Agent(config, ledger, notifier)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    try:
        await agent.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    return 0
