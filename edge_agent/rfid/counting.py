"""The rules of an RFID count that need no I/O: control barcodes, zone checks, live view.

:class:`~edge_agent.rfid.engine.RfidEngine` applies them; they read only their arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge_agent.config import RfidSection
from edge_agent.errors import OperationError
from edge_agent.rfid.tally import CountSession
from edge_agent.rfid.transactions import iso


def control_action(cfg: RfidSection, code: str) -> tuple[str, str | None] | None:
    """What a scanned RFID control barcode asks for: ``("open", zone)`` for
    ``rfid.count_barcode[:ZONE]`` (zone None: the whole store), ``("close", None)``,
    ``("cancel", None)``; None for any other code."""
    code = code.strip()
    prefix = cfg.count_barcode
    if code == prefix or code.startswith(prefix + ":"):
        return "open", (code[len(prefix) + 1:] if code != prefix else None) or None
    if code in (cfg.close_barcode, cfg.cancel_barcode):
        return ("close" if code == cfg.close_barcode else "cancel"), None
    return None


def check_zones(known: Sequence[str], zones: Sequence[str] | None) -> frozenset[str] | None:
    """The zones a count asks for, checked against the inventory readers' ``known`` zones
    (None: the whole store)."""
    if not known:
        raise OperationError("no_inventory_readers", "no UHF reader has role "
                             '"inventory": configure one with a zone to count', status=409)
    if zones is None:
        return None
    unknown = sorted(set(zones) - set(known))
    if unknown:
        raise OperationError("unknown_zone", f"no inventory reader covers zone(s) "
                             f"{', '.join(unknown)} (zones: {', '.join(known)})",
                             status=422)
    return frozenset(zones)


def live_view(session: CountSession) -> dict[str, Any]:
    """An open count as the API shows it (progress so far)."""
    return {
        "count_id": session.count_id, "status": "open",
        "zones": sorted(session.zones) if session.zones is not None else None,
        "scope": "zones" if session.zones is not None else "store",
        "opened_at": iso(session.opened_at), "reads": session.reads,
        "tags": session.distinct, "non_sgtin_reads": session.non_sgtin_reads,
        "overflow": session.overflow, "per_gtin": session.per_gtin(),
    }
