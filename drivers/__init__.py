"""Store hardware drivers: sans-IO parsers, thin async readers, typed events.

``drivers`` imports nothing from the rest of the project.  Entry point for the
agent: :func:`drivers.open_reader`.  The names below load on first use, so that a
submodule (``drivers.backoff``) can be imported alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from drivers.reader_base import DeviceReader
    from drivers.readers import open_reader

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
    "HidScannerSettings",
    "PortError",
    "RejectedInput",
    "ScanEvent",
    "SerialScannerSettings",
    "TagEvent",
    "UhfSettings",
    "open_reader",
]

# Lazy (PEP 562): ``import drivers.backoff`` from ``sync`` must not load the readers,
# pyserial and structlog.
_HOME = {
    "BleBeaconSettings": "config", "DeviceSettings": "config", "DeviceSettingsBase": "config",
    "DoorCounterSettings": "config", "Em4100Settings": "config",
    "HidScannerSettings": "config", "SerialScannerSettings": "config", "UhfSettings": "config",
    "DriverError": "errors", "DriverUnavailable": "errors",
    "PortError": "errors", "DeviceReader": "reader_base", "open_reader": "readers",
}


def __getattr__(name: str) -> Any:
    if name in __all__:
        module = importlib.import_module(f"drivers.{_HOME.get(name, 'events')}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'drivers' has no attribute {name!r}")
