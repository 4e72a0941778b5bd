"""Sold items known by serial: an EPC given with a sale or return line, checked and
decoded (SGTIN-96 -> GTIN + serial), pure. The service records what it returns in the
``rfid_sold`` set (:func:`edge_agent.rfid.store.record_sold`)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.epc import decode_sgtin96
from edge_agent.errors import OperationError

__all__ = ["SoldTag", "parse_epc"]


@dataclass(frozen=True, slots=True)
class SoldTag:
    epc: str  # 24 upper-case hex digits
    gtin: str  # GTIN-14
    serial: str


def parse_epc(epc: str, where: str) -> SoldTag:
    """An SGTIN-96 EPC in hex, or OperationError ``invalid_epc``."""
    try:
        raw = bytes.fromhex(epc)
    except ValueError:
        raw = b""
    sgtin = decode_sgtin96(raw)
    if sgtin is None:
        raise OperationError("invalid_epc", f"{where}: the epc is not an SGTIN-96 EPC "
                             "(24 hex digits, header 30)", status=422)
    return SoldTag(raw.hex().upper(), sgtin.gtin, sgtin.serial)
