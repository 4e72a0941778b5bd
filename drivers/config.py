"""Device settings: one pydantic model per device kind, discriminated on ``kind``.

The agent subclasses these models to add its routing fields (mode, terminal,
zone...), so they are deliberately open to subclassing; ``kind`` is a ``Literal``
field on each.  All models are frozen and reject unknown keys.

TOML shape (one ``[[devices]]`` table per device; the agent owns the table name)::

    [[devices]]
    kind = "serial_scanner"
    name = "till-1"
    port = "/dev/serial/by-id/usb-Honeywell_...-if00"   # or socket://h:p, rfc2217://h:p
    baudrate = 9600
    suffix = "CR"            # CR | LF | CRLF | TAB
    prefix = ""              # literal prefix the scanner sends before each code
    stx_etx = false          # frames are STX <code> ETX instead of <code><suffix>
    strip_aim = true         # strip "]E0"-style AIM ids, keep as symbology metadata
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "BleBeaconSettings",
    "DeviceSettings",
    "DeviceSettingsBase",
    "DoorCounterSettings",
    "Em4100Settings",
    "HidScannerSettings",
    "SerialScannerSettings",
    "UhfSettings",
]

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
DEFAULT_DOOR_REGEX = r"(?i)^\s*(?P<dir>in|out)\s+(?P<count>\d{1,6})\s*$"


class DeviceSettingsBase(BaseModel):
    """Fields common to every device kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    enabled: bool = True
    reconnect_initial_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @model_validator(mode="after")
    def _backoff_order(self) -> DeviceSettingsBase:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self


Port = Annotated[str, Field(min_length=1, max_length=1024)]
Baudrate = Annotated[int, Field(ge=50, le=4_000_000)]


class SerialScannerSettings(DeviceSettingsBase):
    """RS-232 / USB-CDC barcode scanner reached through a pyserial URL or path."""

    kind: Literal["serial_scanner"] = "serial_scanner"
    port: Port
    baudrate: Baudrate = 9600
    suffix: Literal["CR", "LF", "CRLF", "TAB"] = "CR"
    prefix: Annotated[str, Field(max_length=16)] = ""
    stx_etx: bool = False
    strip_aim: bool = True


class HidScannerSettings(DeviceSettingsBase):
    """USB keyboard-wedge scanner read through evdev (Linux, ``hid`` extra)."""

    kind: Literal["hid_scanner"] = "hid_scanner"
    path: Annotated[str, Field(min_length=1, max_length=1024)]
    grab: bool = True
    strip_aim: bool = True


class Em4100Settings(DeviceSettingsBase):
    """125 kHz EM4100 reader (RDM6300 or ID-12LA/ID-20LA framing)."""

    kind: Literal["em4100"] = "em4100"
    port: Port
    baudrate: Baudrate = 9600
    variant: Literal["rdm6300", "id12la"] = "rdm6300"
    gone_after_s: Annotated[float, Field(gt=0, le=3600)] = 1.0


class UhfSettings(DeviceSettingsBase):
    """UHF reader of the ``BB Type Cmd PL_H PL_L Params CS 7E`` family."""

    kind: Literal["uhf"] = "uhf"
    port: Port
    baudrate: Baudrate = 115200
    poll_count: Annotated[int, Field(ge=1, le=65535)] = 10000
    """Inventory rounds requested per multi-poll command (0x27)."""
    poll_restart_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    """Re-issue the multi-poll command this often (readers stop after poll_count)."""
    dedup_window_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    """A tag is reported once, then 'gone' after this long without a sighting."""


class BleBeaconSettings(DeviceSettingsBase):
    """BLE beacon scanner: a bleak adapter (``ble`` extra) or a simulator source."""

    kind: Literal["ble_beacon"] = "ble_beacon"
    source: Annotated[str, Field(min_length=1, max_length=1024)] = "hci0"
    """``hciN`` (bleak adapter) or ``sim://<path>`` (simulator pty/socket path)."""
    ibeacon_uuids: tuple[uuid.UUID, ...] = ()
    eddystone_namespaces: tuple[str, ...] = ()
    rssi_threshold: Annotated[int, Field(ge=-127, le=20)] = -90
    dedup_window_s: Annotated[float, Field(gt=0, le=3600)] = 10.0

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        if value.startswith("sim://"):
            if len(value) <= len("sim://"):
                raise ValueError("sim:// source needs a path")
            return value
        if not re.fullmatch(r"hci\d{1,3}", value):
            raise ValueError("source must be an adapter name like 'hci0' or 'sim://<path>'")
        return value

    @field_validator("eddystone_namespaces")
    @classmethod
    def _check_namespaces(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for ns in value:
            norm = ns.lower().removeprefix("0x")
            if not re.fullmatch(r"[0-9a-f]{20}", norm):
                raise ValueError(f"eddystone namespace must be 10 bytes of hex: {ns!r}")
            out.append(norm)
        return tuple(out)

    @model_validator(mode="after")
    def _something_to_keep(self) -> BleBeaconSettings:
        if not self.ibeacon_uuids and not self.eddystone_namespaces:
            raise ValueError("configure at least one of ibeacon_uuids, eddystone_namespaces")
        return self


class DoorCounterSettings(DeviceSettingsBase):
    """Serial people counter sending one line per event (``IN 1`` / ``OUT 1``).

    ``line_regex`` must define the named groups ``dir`` and ``count``; ``dir`` is
    matched case-insensitively against in/out (also i/o, enter/exit, entry).
    """

    kind: Literal["door_counter"] = "door_counter"
    port: Port
    baudrate: Baudrate = 9600
    line_regex: Annotated[str, Field(min_length=1, max_length=512)] = DEFAULT_DOOR_REGEX

    @field_validator("line_regex")
    @classmethod
    def _check_regex(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"line_regex does not compile: {exc}") from exc
        missing = {"dir", "count"} - set(compiled.groupindex)
        if missing:
            raise ValueError(f"line_regex lacks named group(s): {', '.join(sorted(missing))}")
        return value


DeviceSettings: TypeAlias = Annotated[
    SerialScannerSettings
    | HidScannerSettings
    | Em4100Settings
    | UhfSettings
    | BleBeaconSettings
    | DoorCounterSettings,
    Field(discriminator="kind"),
]
