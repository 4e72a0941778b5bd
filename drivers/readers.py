"""Thin async readers: open the port, feed the parser, emit typed events.

Every reader's :meth:`DeviceReader.run` runs until cancelled: it opens the port,
reads, and on any failure (port absent, unplugged, EOF, optional extra missing)
records the state, emits a :class:`~drivers.events.DeviceStateEvent`, waits a
jittered capped exponential backoff (``reconnect_initial_s`` doubling up to
``reconnect_max_s``, each delay drawn from [d/2, d]) and tries again.  The first
failure of a streak is logged at warning, repeats at debug.

``emit`` is called synchronously on the event-loop thread.  Serial I/O uses
``serial_asyncio_fast`` (non-blocking fd transport; ``socket://`` via asyncio
sockets), so the loop is never blocked.

Card data: every scanned code (serial and HID) goes through ``card_filter``
(default :func:`drivers.carddata.is_card_data` without a catalog) before
anything else; a hit is counted in ``card_data_rejected`` and reported as
``RejectedInput("card_data_rejected")``, never logged or emitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import serial
import serial_asyncio_fast
import structlog

from drivers.backoff import Backoff
from drivers.ble import AdRecord, BeaconMatcher, SimFeedParser
from drivers.carddata import is_card_data
from drivers.config import (
    BleBeaconSettings,
    DeviceSettingsBase,
    DoorCounterSettings,
    Em4100Settings,
    HidScannerSettings,
    SerialScannerSettings,
    UhfSettings,
)
from drivers.door import DoorFrame, DoorParser
from drivers.em4100 import Em4100Frame, Em4100Parser
from drivers.epc import decode_sgtin96
from drivers.errors import DriverError, DriverUnavailable, PortError
from drivers.events import (
    BeaconEvent,
    DeviceEvent,
    DeviceState,
    DeviceStateEvent,
    DeviceStatus,
    DoorEvent,
    RejectedInput,
    ScanEvent,
    TagEvent,
)
from drivers.framing import Rejected
from drivers.hid import EV_KEY, KeyDecoder, KeySource, open_evdev
from drivers.presence import PresenceTracker
from drivers.scanner import ScanFrame, ScanParser, split_aim
from drivers.uhf import (
    CMD_ERROR,
    ERR_NO_TAG,
    UhfFrame,
    UhfParser,
    multi_poll_command,
    parse_tag_notice,
    stop_command,
)

__all__ = [
    "BleBeaconReader",
    "DeviceReader",
    "DoorCounterReader",
    "Em4100Reader",
    "HidScannerReader",
    "SerialScannerReader",
    "UhfReader",
    "backoff_delay",
    "open_reader",
]

Emit = Callable[[DeviceEvent], None]
CardFilter = Callable[[str], bool]
READ_SIZE = 4096
_jitter = random.SystemRandom()


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Delay before retry number ``attempt`` (0-based): capped exponential, equal jitter."""
    return Backoff(initial, maximum, "equal", attempt, _jitter).next_delay()


class DeviceReader(ABC):
    """Base of all readers.  Subclasses implement :meth:`_session`."""

    kind: ClassVar[str]

    def __init__(
        self, settings: DeviceSettingsBase, emit: Emit, *, card_filter: CardFilter | None = None
    ) -> None:
        self.settings = settings
        self._emit = emit
        self._card_filter: CardFilter = card_filter or is_card_data
        self._log = structlog.get_logger().bind(device=settings.name, kind=self.kind)
        self._state: DeviceState = "disconnected"
        self._since = time.time()
        self._detail = "not started"
        self.reads = 0
        self.frames_rejected = 0
        self.reconnects = 0
        self.card_data_rejected = 0
        self._ever_connected = False
        self._backoff = Backoff(settings.reconnect_initial_s, settings.reconnect_max_s,
                                "equal", rng=_jitter)
        self._failing = False

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    @abstractmethod
    def port(self) -> str: ...

    @property
    def status(self) -> DeviceStatus:
        return DeviceStatus(
            name=self.settings.name,
            kind=self.kind,
            port=self.port,
            state=self._state,
            since=self._since,
            detail=self._detail,
            reads=self.reads,
            frames_rejected=self.frames_rejected,
            reconnects=self.reconnects,
            card_data_rejected=self.card_data_rejected,
        )

    # -- state -------------------------------------------------------------

    def _set_state(self, state: DeviceState, detail: str) -> None:
        if state == self._state and detail == self._detail:
            return
        self._state = state
        self._detail = detail
        self._since = time.time()
        self._emit(DeviceStateEvent(device=self.name, state=state, detail=detail))

    def _connected(self) -> None:
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        self._backoff.reset()
        if self._failing:
            self._log.info("device.recovered", port=self.port)
        self._failing = False
        self._set_state("connected", "")

    def _failed(self, state: DeviceState, detail: str) -> None:
        log = self._log.debug if self._failing else self._log.warning
        log("device.failed", state=state, reason=detail, port=self.port)
        self._failing = True
        self._set_state(state, detail)

    # -- main loop ---------------------------------------------------------

    async def run(self) -> None:
        """Read until cancelled, reconnecting forever.  Raises only CancelledError."""
        while True:
            try:
                await self._session()
                self._failed("disconnected", "port closed")
            except DriverUnavailable as exc:
                self._failed("error", str(exc))
                self._backoff.attempt = max(self._backoff.attempt, 64)  # retry at the cap
            except (DriverError, OSError, serial.SerialException) as exc:
                self._failed("disconnected", str(exc) or type(exc).__name__)
            except Exception as exc:  # noqa: BLE001 -- run() must never raise; report and retry
                self._log.exception("device.crashed", port=self.port)
                self._failed("error", f"internal error: {type(exc).__name__}: {exc}")
            finally:
                self._session_ended()
            await asyncio.sleep(self._backoff.next_delay())

    @abstractmethod
    async def _session(self) -> None:
        """Open the device, call :meth:`_connected`, read until it fails."""

    def _session_ended(self) -> None:  # noqa: B027 -- optional hook
        """Called after each session (presence readers flush 'gone' events here)."""

    # -- helpers -----------------------------------------------------------

    def _rejected(self, item: Rejected) -> None:
        self.frames_rejected += 1
        self._log.debug("device.frame_rejected", reason=item.reason)
        self._emit(RejectedInput(device=self.name, reason=item.reason))

    def _scan(self, code: str, symbology: str | None) -> None:
        if self._card_filter(code):
            self.card_data_rejected += 1
            self._emit(RejectedInput(device=self.name, reason="card_data_rejected"))
            return
        self.reads += 1
        self._emit(ScanEvent(device=self.name, code=code, symbology=symbology))


class SerialReader(DeviceReader):
    """A reader over a pyserial URL/path; subclasses handle bytes and ticks."""

    tick_s: float | None = None

    def __init__(
        self,
        settings: DeviceSettingsBase,
        emit: Emit,
        *,
        port: str,
        baudrate: int,
        card_filter: CardFilter | None = None,
    ) -> None:
        super().__init__(settings, emit, card_filter=card_filter)
        self._port = port
        self._baudrate = baudrate

    @property
    def port(self) -> str:
        return self._port

    def _next_tick(self) -> float | None:
        """Seconds the next read may wait before :meth:`_on_tick`; None: no tick needed."""
        return self.tick_s

    async def _session(self) -> None:
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=self._port, baudrate=self._baudrate
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortError(str(exc) or f"cannot open {self._port}", port=self._port) from exc
        try:
            self._connected()
            self._on_open(writer)
            while True:
                tick = self._next_tick()
                try:
                    if tick is None:
                        data = await reader.read(READ_SIZE)
                    else:
                        async with asyncio.timeout(tick):
                            data = await reader.read(READ_SIZE)
                except TimeoutError:
                    self._on_tick(writer, time.time())
                    continue
                except (serial.SerialException, OSError) as exc:
                    raise PortError(f"read failed on {self._port}: {exc}",
                                    port=self._port) from exc
                if not data:
                    raise PortError(f"{self._port}: end of stream", port=self._port)
                self._on_data(data, time.time())
                if tick is not None:
                    self._on_tick(writer, time.time())
        finally:
            try:
                self._on_close(writer)
            finally:
                writer.close()
                # the transport reports connection_lost in a task of its own: let it
                # finish, so that no task outlives the session
                with contextlib.suppress(OSError, serial.SerialException, TimeoutError):
                    async with asyncio.timeout(5.0):
                        await writer.wait_closed()

    def _on_open(self, writer: asyncio.StreamWriter) -> None:
        """Called once the port is open (send start commands here)."""

    def _on_close(self, writer: asyncio.StreamWriter) -> None:
        """Called before the port is closed (best-effort stop commands)."""

    def _on_tick(self, writer: asyncio.StreamWriter, now: float) -> None:
        """Called at least every ``tick_s`` seconds while connected."""

    @abstractmethod
    def _on_data(self, data: bytes, now: float) -> None: ...


class SerialScannerReader(SerialReader):
    kind = "serial_scanner"

    def __init__(
        self, settings: SerialScannerSettings, emit: Emit, *, card_filter: CardFilter | None = None
    ) -> None:
        super().__init__(
            settings, emit, port=settings.port, baudrate=settings.baudrate, card_filter=card_filter
        )
        self._scanner = settings
        self._parser = self._new_parser(settings)

    @staticmethod
    def _new_parser(s: SerialScannerSettings) -> ScanParser:
        return ScanParser(s.suffix, prefix=s.prefix, stx_etx=s.stx_etx, strip_aim=s.strip_aim)

    def _session_ended(self) -> None:
        self._parser = self._new_parser(self._scanner)  # no half code across reconnects

    def _on_data(self, data: bytes, now: float) -> None:
        for item in self._parser.feed(data):
            if isinstance(item, ScanFrame):
                self._scan(item.code, item.symbology)
            else:
                self._rejected(item)


class DoorCounterReader(SerialReader):
    kind = "door_counter"

    def __init__(
        self, settings: DoorCounterSettings, emit: Emit, *, card_filter: CardFilter | None = None
    ) -> None:
        super().__init__(
            settings, emit, port=settings.port, baudrate=settings.baudrate, card_filter=card_filter
        )
        self._parser = DoorParser(settings.line_regex)

    def _on_data(self, data: bytes, now: float) -> None:
        for item in self._parser.feed(data):
            if isinstance(item, DoorFrame):
                self.reads += 1
                self._emit(
                    DoorEvent(device=self.name, direction=item.direction, count=item.count, ts=now)
                )
            else:
                self._rejected(item)


class _PresenceMixin(DeviceReader):
    technology: ClassVar[str] = ""
    _tracker: PresenceTracker

    def _gone(self, key: str, now: float) -> None:
        raise NotImplementedError

    def _expire(self, now: float) -> None:
        for key in self._tracker.expire(now):
            self._gone(key, now)

    def _session_ended(self) -> None:
        # The port is gone: we cannot know what is still in the field.
        now = time.time()
        for key in self._tracker.clear():
            self._gone(key, now)


class Em4100Reader(SerialReader, _PresenceMixin):
    kind = "em4100"

    def _next_tick(self) -> float | None:
        # a tick only expires tags in the field: with none, wait for bytes (idle CPU)
        return self.tick_s if len(self._tracker) else None

    def __init__(
        self, settings: Em4100Settings, emit: Emit, *, card_filter: CardFilter | None = None
    ) -> None:
        super().__init__(
            settings, emit, port=settings.port, baudrate=settings.baudrate, card_filter=card_filter
        )
        self._parser = Em4100Parser(settings.variant)
        self._tracker = PresenceTracker(settings.gone_after_s)
        self.tick_s = min(0.25, settings.gone_after_s / 4)

    def _on_data(self, data: bytes, now: float) -> None:
        for item in self._parser.feed(data):
            if isinstance(item, Em4100Frame):
                self.reads += 1
                if self._tracker.seen(item.tag_id, now):
                    self._emit(
                        TagEvent(
                            device=self.name,
                            tag_id=item.tag_id,
                            technology="em4100",
                            present=True,
                            ts=now,
                        )
                    )
            else:
                self._rejected(item)

    def _on_tick(self, writer: asyncio.StreamWriter, now: float) -> None:
        self._expire(now)

    def _gone(self, key: str, now: float) -> None:
        self._emit(
            TagEvent(device=self.name, tag_id=key, technology="em4100", present=False, ts=now)
        )


class UhfReader(SerialReader, _PresenceMixin):
    """Starts multi-poll inventory on connect, re-arms it periodically, stops on close."""

    kind = "uhf"

    def __init__(
        self, settings: UhfSettings, emit: Emit, *, card_filter: CardFilter | None = None
    ) -> None:
        super().__init__(
            settings, emit, port=settings.port, baudrate=settings.baudrate, card_filter=card_filter
        )
        self._settings = settings
        self._parser = UhfParser()
        self._tracker = PresenceTracker(settings.dedup_window_s)
        self.tick_s = min(0.25, settings.dedup_window_s / 4)
        self._last_poll = 0.0
        self._info: dict[str, tuple[int, str | None, str | None]] = {}
        self.reader_errors = 0

    def _on_open(self, writer: asyncio.StreamWriter) -> None:
        self._parser = UhfParser()
        writer.write(multi_poll_command(self._settings.poll_count))
        self._last_poll = time.time()

    def _on_close(self, writer: asyncio.StreamWriter) -> None:
        if not writer.is_closing():
            writer.write(stop_command())

    def _on_tick(self, writer: asyncio.StreamWriter, now: float) -> None:
        self._expire(now)
        if now - self._last_poll >= self._settings.poll_restart_s:
            writer.write(multi_poll_command(self._settings.poll_count))
            self._last_poll = now

    def _on_data(self, data: bytes, now: float) -> None:
        for item in self._parser.feed(data):
            if isinstance(item, UhfFrame):
                self._frame(item, now)
            else:
                self._rejected(item)

    def _frame(self, frame: UhfFrame, now: float) -> None:
        notice = parse_tag_notice(frame)
        if notice is None:
            if frame.cmd == CMD_ERROR and frame.params[:1] != bytes((ERR_NO_TAG,)):
                self.reader_errors += 1
                self._log.debug("uhf.reader_error", code=frame.params[:1].hex())
            return
        self.reads += 1
        key = notice.epc_hex
        if self._tracker.seen(key, now):
            sg = decode_sgtin96(notice.epc)
            gtin = sg.gtin if sg else None
            ser = sg.serial if sg else None
            self._info[key] = (notice.rssi, gtin, ser)
            self._emit(
                TagEvent(
                    device=self.name,
                    tag_id=key,
                    technology="uhf",
                    present=True,
                    rssi=notice.rssi,
                    epc_gtin=gtin,
                    epc_serial=ser,
                    ts=now,
                )
            )

    def _gone(self, key: str, now: float) -> None:
        rssi, gtin, ser = self._info.pop(key, (None, None, None))
        self._emit(
            TagEvent(
                device=self.name,
                tag_id=key,
                technology="uhf",
                present=False,
                rssi=rssi,
                epc_gtin=gtin,
                epc_serial=ser,
                ts=now,
            )
        )


class BleBeaconReader(SerialReader, _PresenceMixin):
    """BLE beacons from bleak (``hciN``) or from the simulator feed (``sim://...``)."""

    kind = "ble_beacon"

    def __init__(
        self, settings: BleBeaconSettings, emit: Emit, *, card_filter: CardFilter | None = None
    ) -> None:
        sim = settings.source.startswith("sim://")
        port = settings.source.removeprefix("sim://") if sim else settings.source
        super().__init__(settings, emit, port=port, baudrate=115200, card_filter=card_filter)
        self._sim = sim
        self._source = settings.source
        self._matcher = BeaconMatcher(
            settings.ibeacon_uuids, settings.eddystone_namespaces, settings.rssi_threshold
        )
        self._tracker = PresenceTracker(settings.dedup_window_s)
        self.tick_s = min(0.5, settings.dedup_window_s / 4)
        self._parser = SimFeedParser()
        self._last: dict[str, tuple[int, int | None]] = {}

    @property
    def port(self) -> str:
        return self._source

    async def _session(self) -> None:
        if self._sim:
            self._parser = SimFeedParser()
            await super()._session()
        else:
            await self._bleak_session()

    async def _bleak_session(self) -> None:
        try:
            from bleak import BleakScanner  # noqa: PLC0415 -- optional extra
        except ImportError as exc:
            raise DriverUnavailable(
                "bleak is not installed (pip install 'edge-agent[ble]')"
            ) from exc

        def on_adv(_device: Any, adv: Any) -> None:
            svc: dict[int, bytes] = {}
            for key, value in dict(adv.service_data).items():
                s = str(key).lower()
                if s.endswith("-0000-1000-8000-00805f9b34fb") and s.startswith("0000"):
                    svc[int(s[4:8], 16)] = bytes(value)
            self._advert(dict(adv.manufacturer_data), svc, int(adv.rssi), time.time())

        try:
            scanner = BleakScanner(detection_callback=on_adv, adapter=self._source)
            await scanner.start()
        except Exception as exc:  # bleak raises BleakError/DBus errors: map them to PortError
            raise PortError(f"bluetooth adapter {self._source}: {exc}",
                            port=self._source) from exc
        try:
            self._connected()
            while True:
                await asyncio.sleep(self.tick_s or 0.5)
                self._expire(time.time())
        finally:
            await scanner.stop()

    def _on_data(self, data: bytes, now: float) -> None:
        for item in self._parser.feed(data):
            if isinstance(item, AdRecord):
                self._advert(item.manufacturer_data, item.service_data, item.rssi, now)
            else:
                self._rejected(item)

    def _advert(
        self, mfr: dict[int, bytes], svc: dict[int, bytes], rssi: int, now: float
    ) -> None:
        sighting = self._matcher.match(mfr, svc, rssi)
        if sighting is None:
            return
        self.reads += 1
        key = sighting.beacon_id
        self._last[key] = (rssi, sighting.tx_power)
        if self._tracker.seen(key, now):
            self._emit(
                BeaconEvent(
                    device=self.name,
                    beacon_id=key,
                    rssi=rssi,
                    tx_power=sighting.tx_power,
                    present=True,
                    ts=now,
                )
            )

    def _next_tick(self) -> float | None:
        return self.tick_s if len(self._tracker) else None  # as the EM4100's

    def _on_tick(self, writer: asyncio.StreamWriter, now: float) -> None:
        self._expire(now)

    def _gone(self, key: str, now: float) -> None:
        rssi, tx = self._last.pop(key, (-127, None))
        self._emit(
            BeaconEvent(
                device=self.name, beacon_id=key, rssi=rssi, tx_power=tx, present=False, ts=now
            )
        )


KeySourceFactory = Callable[[str, bool], KeySource]


class HidScannerReader(DeviceReader):
    """Keyboard-wedge scanner via evdev (exclusive grab, US key-code table)."""

    kind = "hid_scanner"

    def __init__(
        self,
        settings: HidScannerSettings,
        emit: Emit,
        *,
        card_filter: CardFilter | None = None,
        source_factory: KeySourceFactory = open_evdev,
    ) -> None:
        super().__init__(settings, emit, card_filter=card_filter)
        self._hid = settings
        self._factory = source_factory

    @property
    def port(self) -> str:
        return self._hid.path

    async def _session(self) -> None:
        src = self._factory(self._hid.path, self._hid.grab)
        decoder = KeyDecoder()
        try:
            self._connected()
            async for etype, code, value in src.events():
                if etype != EV_KEY:
                    continue
                scan = decoder.feed(code, value)
                if scan is None:
                    continue
                text, sym = split_aim(scan) if self._hid.strip_aim else (scan, None)
                if text:
                    self._scan(text, sym)
        except OSError as exc:
            raise PortError(f"read failed on {self._hid.path}: {exc}",
                            port=self._hid.path) from exc
        finally:
            src.close()


def open_reader(
    settings: DeviceSettingsBase, emit: Emit, *, card_filter: CardFilter | None = None
) -> DeviceReader:
    """The reader for ``settings`` (any model of :data:`drivers.config.DeviceSettings`,
    or a subclass of one).  ``emit`` is called on the loop thread; ``card_filter(code)``
    returning True drops ``code`` as card data (default: :func:`drivers.carddata.is_card_data`)."""
    if isinstance(settings, SerialScannerSettings):
        return SerialScannerReader(settings, emit, card_filter=card_filter)
    if isinstance(settings, HidScannerSettings):
        return HidScannerReader(settings, emit, card_filter=card_filter)
    if isinstance(settings, Em4100Settings):
        return Em4100Reader(settings, emit, card_filter=card_filter)
    if isinstance(settings, UhfSettings):
        return UhfReader(settings, emit, card_filter=card_filter)
    if isinstance(settings, BleBeaconSettings):
        return BleBeaconReader(settings, emit, card_filter=card_filter)
    if isinstance(settings, DoorCounterSettings):
        return DoorCounterReader(settings, emit, card_filter=card_filter)
    raise DriverError(f"no reader for device kind {getattr(settings, 'kind', '?')!r}")
