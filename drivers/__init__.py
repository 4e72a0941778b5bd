"""Store hardware drivers: sans-IO parsers, thin async readers, typed events.

``drivers`` imports nothing from the rest of the project.  Entry point for the
agent: :func:`drivers.open_reader`.
"""

from __future__ import annotations

from drivers.config import (
    BleBeaconSettings,
    DeviceSettings,
    DeviceSettingsBase,
    DoorCounterSettings,
    Em4100Settings,
    HidScannerSettings,
    SerialScannerSettings,
    UhfSettings,
)
from drivers.errors import DriverError, DriverUnavailable, FrameError, PortError
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
from drivers.readers import DeviceReader, open_reader

__all__ = [
    "BeaconEvent",
    "BleBeaconSettings",
    "DeviceEvent",
    "DeviceReader",
    "DeviceSettings",
    "DeviceSettingsBase",
    "DeviceState",
    "DeviceStateEvent",
    "DeviceStatus",
    "DoorCounterSettings",
    "DoorEvent",
    "DriverError",
    "DriverUnavailable",
    "Em4100Settings",
    "FrameError",
    "HidScannerSettings",
    "PortError",
    "RejectedInput",
    "ScanEvent",
    "SerialScannerSettings",
    "TagEvent",
    "UhfSettings",
    "open_reader",
]
