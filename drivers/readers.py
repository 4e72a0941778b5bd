"""The reader for each device kind: serial and HID scanners, door counters, and :func:`open_reader`.

:func:`open_reader` is the agent's entry point (also as :func:`drivers.open_reader`);
the base classes are in :mod:`drivers.reader_base`, the presence readers (RFID, BLE)
in :mod:`drivers.presence_readers`.  Card data: every scanned code (serial and HID)
goes through the reader's ``card_filter`` before anything else (see
:mod:`drivers.reader_base`).
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.config import (
    DeviceSettingsBase,
    DoorCounterSettings,
    HidScannerSettings,
    SerialScannerSettings,
)
from drivers.door import DoorFrame, DoorParser
from drivers.errors import DriverError, PortError
from drivers.events import DoorEvent
from drivers.hid import EV_KEY, KeyDecoder, KeySource, open_evdev
from drivers.presence_readers import BleBeaconReader, Em4100Reader, UhfReader
from drivers.reader_base import CardFilter, DeviceReader, Emit, SerialReader
from drivers.scanner import ScanFrame, ScanParser, split_aim

__all__ = [
    "DoorCounterReader",
    "HidScannerReader",
    "SerialScannerReader",
    "open_reader",
]


class SerialScannerReader(SerialReader):
    kind = "serial_scanner"
    settings_model = SerialScannerSettings

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

    def _on_frame(self, frame: ScanFrame, now: float) -> None:
        self._scan(frame.code, frame.symbology)


class DoorCounterReader(SerialReader):
    kind = "door_counter"
    settings_model = DoorCounterSettings

    def __init__(
        self, settings: DoorCounterSettings, emit: Emit, *, card_filter: CardFilter | None = None
    ) -> None:
        super().__init__(
            settings, emit, port=settings.port, baudrate=settings.baudrate, card_filter=card_filter
        )
        self._parser = DoorParser(settings.line_regex)

    def _on_frame(self, frame: DoorFrame, now: float) -> None:
        self.reads += 1
        self._emit(
            DoorEvent(device=self.name, direction=frame.direction, count=frame.count, ts=now)
        )


KeySourceFactory = Callable[[str, bool], KeySource]


class HidScannerReader(DeviceReader):
    """Keyboard-wedge scanner via evdev (exclusive grab, US key-code table)."""

    kind = "hid_scanner"
    settings_model = HidScannerSettings

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


_READERS: tuple[type[DeviceReader], ...] = (
    SerialScannerReader, HidScannerReader, Em4100Reader, UhfReader, BleBeaconReader,
    DoorCounterReader,
)
"""Looked up in this order by each one's ``settings_model`` (a subclass of it matches too)."""


def open_reader(
    settings: DeviceSettingsBase, emit: Emit, *, card_filter: CardFilter | None = None
) -> DeviceReader:
    """The reader for ``settings`` (any model of :data:`drivers.config.DeviceSettings`,
    or a subclass of one).  ``emit`` is called on the loop thread; ``card_filter(code)``
    returning True drops ``code`` as card data (default: :func:`drivers.carddata.is_card_data`)."""
    for reader in _READERS:
        if isinstance(settings, reader.settings_model):
            return reader(settings, emit, card_filter=card_filter)
    raise DriverError(f"no reader for device kind {getattr(settings, 'kind', '?')!r}")
