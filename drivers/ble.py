"""BLE beacon advertisements: iBeacon and Eddystone-UID (pure parsing) + sources.

* iBeacon: manufacturer data for company ``0x004C``: ``02 15`` UUID(16) major(2)
  minor(2) tx_power(1, signed), big-endian.  ``beacon_id = "<uuid>:<major>:<minor>"``.
* Eddystone-UID: service data for UUID ``0xFEAA``, frame type ``00``: tx_power(1,
  signed) namespace(10) instance(6) [2 reserved].  ``beacon_id = "<ns-hex>:<inst-hex>"``.

Simulator feed format (``source = "sim://<path>"``): the path is a pty (or any
pyserial URL after ``sim://``, e.g. ``sim://socket://127.0.0.1:7000``) carrying
one ASCII record per line::

    <rssi> <advertising-data-hex>\\n          e.g.  -61 1aff4c000215f7826da6...c5

``<rssi>`` is a signed decimal dBm value; the hex is the raw advertising payload
as a sequence of AD structures (``len type data``): type ``FF`` manufacturer
specific data, type ``16`` 16-bit-UUID service data.  Malformed records are
counted as rejected frames.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from drivers.framing import Rejected
from drivers.lines import DelimitedParser

__all__ = [
    "APPLE",
    "EDDYSTONE_UUID16",
    "AdRecord",
    "BeaconMatcher",
    "BeaconSighting",
    "SimFeedParser",
    "encode_eddystone_uid",
    "encode_ibeacon",
    "parse_ad_structures",
    "parse_eddystone_uid",
    "parse_ibeacon",
]

APPLE = 0x004C
EDDYSTONE_UUID16 = 0xFEAA
EDDYSTONE_UUID128 = "0000feaa-0000-1000-8000-00805f9b34fb"
AD_MANUFACTURER = 0xFF
AD_SERVICE_DATA16 = 0x16


@dataclass(frozen=True, slots=True)
class BeaconSighting:
    beacon_id: str
    kind: str  # "ibeacon" | "eddystone_uid"
    key: str  # the configured filter key: uuid str or namespace hex
    tx_power: int | None


@dataclass(frozen=True, slots=True)
class AdRecord:
    rssi: int
    manufacturer_data: dict[int, bytes]
    service_data: dict[int, bytes]


def _signed(b: int) -> int:
    return b - 256 if b >= 128 else b


def parse_ibeacon(mfr: bytes) -> BeaconSighting | None:
    """Manufacturer payload (after the company id) of company 0x004C."""
    if len(mfr) < 23 or mfr[0] != 0x02 or mfr[1] != 0x15:
        return None
    u = str(uuid.UUID(bytes=bytes(mfr[2:18])))
    major = int.from_bytes(mfr[18:20], "big")
    minor = int.from_bytes(mfr[20:22], "big")
    return BeaconSighting(f"{u}:{major}:{minor}", "ibeacon", u, _signed(mfr[22]))


def parse_eddystone_uid(data: bytes) -> BeaconSighting | None:
    """Service data payload for UUID 0xFEAA."""
    if len(data) < 18 or data[0] != 0x00:
        return None
    ns = data[2:12].hex()
    inst = data[12:18].hex()
    return BeaconSighting(f"{ns}:{inst}", "eddystone_uid", ns, _signed(data[1]))


def parse_ad_structures(adv: bytes) -> tuple[dict[int, bytes], dict[int, bytes]] | None:
    """Split raw advertising data into (manufacturer data, 16-bit service data).

    None if the AD structure lengths do not add up.
    """
    mfr: dict[int, bytes] = {}
    svc: dict[int, bytes] = {}
    i = 0
    n = len(adv)
    while i < n:
        ln = adv[i]
        if ln == 0:
            break  # zero padding ends the significant part
        if i + 1 + ln > n:
            return None
        ad_type = adv[i + 1]
        body = adv[i + 2 : i + 1 + ln]
        if ad_type == AD_MANUFACTURER and len(body) >= 2:
            mfr[int.from_bytes(body[:2], "little")] = bytes(body[2:])
        elif ad_type == AD_SERVICE_DATA16 and len(body) >= 2:
            svc[int.from_bytes(body[:2], "little")] = bytes(body[2:])
        i += 1 + ln
    return mfr, svc


def encode_ibeacon(u: uuid.UUID, major: int, minor: int, tx_power: int = -59) -> bytes:
    """Raw advertising data (flags + manufacturer AD) for an iBeacon."""
    body = (
        APPLE.to_bytes(2, "little")
        + b"\x02\x15"
        + u.bytes
        + major.to_bytes(2, "big")
        + minor.to_bytes(2, "big")
        + (tx_power & 0xFF).to_bytes(1, "big")
    )
    return b"\x02\x01\x06" + bytes((len(body) + 1, AD_MANUFACTURER)) + body


def encode_eddystone_uid(namespace: bytes, instance: bytes, tx_power: int = -20) -> bytes:
    """Raw advertising data (flags + service UUID list + service data) for Eddystone-UID."""
    body = (
        EDDYSTONE_UUID16.to_bytes(2, "little")
        + b"\x00"
        + (tx_power & 0xFF).to_bytes(1, "big")
        + namespace
        + instance
        + b"\x00\x00"
    )
    return b"\x02\x01\x06\x03\x03\xaa\xfe" + bytes((len(body) + 1, AD_SERVICE_DATA16)) + body


class BeaconMatcher:
    """Keeps only configured iBeacon UUIDs / Eddystone namespaces above an RSSI floor."""

    def __init__(
        self,
        ibeacon_uuids: Iterable[uuid.UUID],
        eddystone_namespaces: Iterable[str],
        rssi_threshold: int,
    ) -> None:
        self.uuids = {str(u) for u in ibeacon_uuids}
        self.namespaces = {n.lower() for n in eddystone_namespaces}
        self.rssi_threshold = rssi_threshold

    def match(
        self, manufacturer_data: dict[int, bytes], service_data: dict[int, bytes], rssi: int
    ) -> BeaconSighting | None:
        if rssi < self.rssi_threshold:
            return None
        mfr = manufacturer_data.get(APPLE)
        if mfr is not None:
            s = parse_ibeacon(mfr)
            if s is not None and s.key in self.uuids:
                return s
        ed = service_data.get(EDDYSTONE_UUID16)
        if ed is not None:
            s = parse_eddystone_uid(ed)
            if s is not None and s.key in self.namespaces:
                return s
        return None


class SimFeedParser:
    """Parser for the simulator feed (see module docstring); contract of :mod:`drivers.framing`."""

    def __init__(self) -> None:
        self._lines = DelimitedParser(b"\n", max_line=600)

    def feed(self, data: bytes) -> list[AdRecord | Rejected]:
        return self._lines.feed_each(data, self._record)

    @staticmethod
    def _record(line: bytes) -> AdRecord | Rejected | None:
        line = line.strip()
        if not line:
            return None
        parts = line.split()
        if len(parts) != 2:
            return Rejected.of("bad_record", line)
        try:
            rssi = int(parts[0])
            adv = bytes.fromhex(parts[1].decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            return Rejected.of("bad_record", line)
        if not -127 <= rssi <= 20:
            return Rejected.of("bad_rssi", line)
        split = parse_ad_structures(adv)
        if split is None:
            return Rejected.of("bad_ad_structure", line)
        return AdRecord(rssi, split[0], split[1])
