"""Presence readers: EM4100 and UHF RFID tags, BLE beacons; each reported present, then gone.

A tag or beacon is *present* from its first read and *gone* once unseen for its window
(:class:`drivers.presence.PresenceTracker`), or when the port is lost.  The UHF reader
also starts multi-poll inventory on connect, re-arms it and stops it on close; the BLE
reader reads bleak (``hciN``) or the simulator feed (``sim://...``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from drivers.ble import AdRecord, BeaconMatcher, SimFeedParser
from drivers.config import BleBeaconSettings, Em4100Settings, UhfSettings
from drivers.em4100 import Em4100Frame, Em4100Parser
from drivers.epc import decode_sgtin96
from drivers.errors import DriverUnavailable, PortError
from drivers.events import BeaconEvent, TagEvent
from drivers.presence import PresenceTracker
from drivers.reader_base import CardFilter, Emit, SerialReader
from drivers.uhf import (
    CMD_ERROR,
    ERR_NO_TAG,
    UhfFrame,
    UhfParser,
    multi_poll_command,
    parse_tag_notice,
    stop_command,
)

__all__ = ["BleBeaconReader", "Em4100Reader", "UhfReader"]


class _PresenceReader(SerialReader):
    """A serial reader of things in the field: a tracker reports each one present once,
    and gone after its window (or when the port is lost)."""

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

    def _next_tick(self) -> float | None:
        # a tick only expires what is in the field: with nothing, wait for bytes (idle CPU)
        return self.tick_s if len(self._tracker) else None

    def _on_tick(self, writer: asyncio.StreamWriter, now: float) -> None:
        self._expire(now)


class Em4100Reader(_PresenceReader):
    kind = "em4100"
    settings_model = Em4100Settings

    def __init__(
        self, settings: Em4100Settings, emit: Emit, *, card_filter: CardFilter | None = None
    ) -> None:
        super().__init__(
            settings, emit, port=settings.port, baudrate=settings.baudrate, card_filter=card_filter
        )
        self._parser = Em4100Parser(settings.variant)
        self._tracker = PresenceTracker(settings.gone_after_s)
        self.tick_s = min(0.25, settings.gone_after_s / 4)

    def _on_frame(self, frame: Em4100Frame, now: float) -> None:
        self.reads += 1
        if self._tracker.seen(frame.tag_id, now):
            self._emit(
                TagEvent(
                    device=self.name,
                    tag_id=frame.tag_id,
                    technology="em4100",
                    present=True,
                    ts=now,
                )
            )

    def _gone(self, key: str, now: float) -> None:
        self._emit(
            TagEvent(device=self.name, tag_id=key, technology="em4100", present=False, ts=now)
        )


class UhfReader(_PresenceReader):
    """Starts multi-poll inventory on connect, re-arms it periodically, stops on close."""

    kind = "uhf"
    settings_model = UhfSettings

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

    def _next_tick(self) -> float | None:
        return self.tick_s  # ticks re-arm the inventory, tags in the field or not

    def _on_frame(self, frame: UhfFrame, now: float) -> None:
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
            self._tag(key, True, self._info[key], now)

    def _gone(self, key: str, now: float) -> None:
        self._tag(key, False, self._info.pop(key, (None, None, None)), now)

    def _tag(
        self, key: str, present: bool, info: tuple[int | None, str | None, str | None], now: float
    ) -> None:
        rssi, gtin, ser = info
        self._emit(
            TagEvent(
                device=self.name,
                tag_id=key,
                technology="uhf",
                present=present,
                rssi=rssi,
                epc_gtin=gtin,
                epc_serial=ser,
                ts=now,
            )
        )


class BleBeaconReader(_PresenceReader):
    """BLE beacons from bleak (``hciN``) or from the simulator feed (``sim://...``)."""

    kind = "ble_beacon"
    settings_model = BleBeaconSettings

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

    def _on_frame(self, frame: AdRecord, now: float) -> None:
        self._advert(frame.manufacturer_data, frame.service_data, frame.rssi, now)

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

    def _gone(self, key: str, now: float) -> None:
        rssi, tx = self._last.pop(key, (-127, None))
        self._emit(
            BeaconEvent(
                device=self.name, beacon_id=key, rssi=rssi, tx_power=tx, present=False, ts=now
            )
        )
