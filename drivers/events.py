"""Typed events emitted by device readers, and the device status snapshot.

Every event carries ``device`` (the configured device name) and ``ts``
(``time.time()`` at the moment the reader produced it).  Events never carry raw
card data: input recognised as card data is dropped and only counted
(:class:`RejectedInput` with ``reason="card_data_rejected"``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

__all__ = [
    "BeaconEvent",
    "DeviceEvent",
    "DeviceState",
    "DeviceStateEvent",
    "DeviceStatus",
    "DoorEvent",
    "RejectedInput",
    "ScanEvent",
    "TagEvent",
]

DeviceState: TypeAlias = Literal["connected", "disconnected", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanEvent:
    """A barcode was scanned.  ``code`` has AIM ids stripped; GS (0x1D) is kept."""

    device: str
    code: str
    symbology: str | None = None
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class TagEvent:
    """An RFID tag appeared (``present=True``) or was not seen for the window (False)."""

    device: str
    tag_id: str
    technology: Literal["em4100", "uhf"]
    present: bool
    rssi: int | None = None
    epc_gtin: str | None = None
    epc_serial: str | None = None
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class BeaconEvent:
    """A BLE beacon appeared or went away.

    ``beacon_id`` is ``"<uuid>:<major>:<minor>"`` for iBeacon and
    ``"<namespace-hex>:<instance-hex>"`` for Eddystone UID.
    """

    device: str
    beacon_id: str
    rssi: int
    tx_power: int | None
    present: bool
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class DoorEvent:
    """A door counter reported ``count`` people passing in ``direction``."""

    device: str
    direction: Literal["in", "out"]
    count: int
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStateEvent:
    """The reader's connection state changed."""

    device: str
    state: DeviceState
    detail: str = ""
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectedInput:
    """Input was dropped (``card_data_rejected``, ``bad_checksum``, ...).

    Never carries the raw data.
    """

    device: str
    reason: str
    ts: float = field(default_factory=time.time)


DeviceEvent: TypeAlias = (
    ScanEvent | TagEvent | BeaconEvent | DoorEvent | DeviceStateEvent | RejectedInput
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStatus:
    """Snapshot of one reader's state and counters (for the agent and the health topic)."""

    name: str
    kind: str
    port: str
    state: DeviceState
    since: float
    detail: str = ""
    reads: int = 0
    frames_rejected: int = 0
    reconnects: int = 0
    card_data_rejected: int = 0
