"""Barcode interpretation (pure): GTINs, GS1 element strings, in-store RCNs.

Built on ``biip``.  :func:`interpret` never raises: anything it cannot make sense
of comes back as ``BarcodeInfo(kind="other", error=...)``.

Variable-measure lookup key (decision): for an in-store RCN (prefix 02, 20-29)
whose region rules define a price/weight part, :attr:`BarcodeInfo.lookup_gtin`
is the RCN with that part *zeroed and the check digit recomputed* (biip's
``Rcn.without_variable_measure``), as a GTIN-14; e.g. Sweden
``2302120012344`` (1.234 kg of item 02120) -> ``02302120000006``.  That is the
number a store registers for the item in its catalog.  Without a region (or for
prefixes without a measure in that region) the full GTIN is the key.

:func:`resolve` tries, in order: the GTIN table (``lookup.sku_for_gtin``), the
raw code as a SKU (``lookup.has_sku``), then aliases (``lookup.sku_for_alias``).
It raises nothing of its own; exceptions raised by the ``lookup`` implementation
propagate unchanged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol, TypeAlias

from biip import ParseConfig, parse
from biip.gtin import Gtin
from biip.rcn import Rcn, RcnRegion

__all__ = [
    "BarcodeInfo",
    "BarcodeKind",
    "CatalogLookup",
    "RcnRegion",
    "Resolution",
    "interpret",
    "region_from_name",
    "resolve",
]

BarcodeKind: TypeAlias = Literal["gtin", "variable_weight", "variable_price", "rcn", "gs1", "other"]
_GS1_SYMBOLOGIES = {"]C1", "]d2", "]Q3", "]e0", "]J1"}
_GTIN_LENGTHS = (6, 7, 8, 12, 13, 14)


@dataclass(frozen=True, slots=True)
class BarcodeInfo:
    raw: str
    kind: BarcodeKind
    gtin: str | None = None  # 14 digits
    lookup_gtin: str | None = None  # 14 digits; RCN with the measure zeroed
    weight_kg: Decimal | None = None
    weight_g: int | None = None
    price: Decimal | None = None
    count: int | None = None
    batch: str | None = None
    expiry: dt.date | None = None
    serial: str | None = None
    symbology: str | None = None
    error: str | None = None


class CatalogLookup(Protocol):
    """Implemented by the agent over its catalog."""

    def sku_for_gtin(self, gtin14: str) -> str | None: ...

    def has_sku(self, code: str) -> bool: ...

    def sku_for_alias(self, code: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Resolution:
    info: BarcodeInfo
    sku: str | None
    via: Literal["gtin", "sku", "alias"] | None
    reason: str | None = None  # why sku is None: unknown_gtin, unknown_code, invalid_code


def region_from_name(name: str | None) -> RcnRegion | None:
    """``"se"``/``"SWEDEN"`` -> RcnRegion.SWEDEN; None/empty -> None; ValueError if unknown."""
    if not name:
        return None
    for region in RcnRegion:
        if name.lower() in (region.value.lower(), region.name.lower()):
            return region
    raise ValueError(f"unknown RCN region {name!r}; one of {[r.value for r in RcnRegion]}")


def _from_gtin(raw: str, gtin: Gtin, symbology: str | None) -> BarcodeInfo:
    g14 = gtin.as_gtin_14()
    if not isinstance(gtin, Rcn):
        return BarcodeInfo(raw=raw, kind="gtin", gtin=g14, lookup_gtin=g14, symbology=symbology)
    lookup = g14
    if gtin.region is not None:
        try:
            lookup = gtin.without_variable_measure().as_gtin_14()
        except Exception:  # noqa: BLE001 -- biip raises EncodeError for unknown rules
            lookup = g14
    kind: BarcodeKind = "rcn"
    weight_g = None
    if gtin.weight is not None:
        kind = "variable_weight"
        weight_g = int(gtin.weight * 1000)
    elif gtin.price is not None:
        kind = "variable_price"
    elif gtin.count is not None:
        kind = "rcn"
    return BarcodeInfo(
        raw=raw,
        kind=kind,
        gtin=g14,
        lookup_gtin=lookup,
        weight_kg=gtin.weight,
        weight_g=weight_g,
        price=gtin.price,
        count=gtin.count,
        symbology=symbology,
    )


def interpret(code: str, region: RcnRegion | str | None = None) -> BarcodeInfo:
    """Interpret one scanned code (AIM id prefix allowed; GS separates GS1 fields)."""
    reg = region_from_name(region) if isinstance(region, str) else region
    try:
        result = parse(code, config=ParseConfig(rcn_region=reg))
    except Exception as exc:  # noqa: BLE001 -- biip raises ParseError for junk; never propagate
        return BarcodeInfo(raw=code, kind="other", error=str(exc))
    sym = result.symbology_identifier.value if result.symbology_identifier else None
    data = code[3:] if sym and code.startswith(sym) else code
    plain = data.isdigit() and len(data) in _GTIN_LENGTHS and sym not in _GS1_SYMBOLOGIES
    if plain and result.gtin is not None:
        return _from_gtin(data, result.gtin, sym)
    msg = result.gs1_message
    if msg is not None and not plain:
        gtin14: str | None = None
        batch = serial = None
        expiry: dt.date | None = None
        weight_kg = price = None
        for es in msg.element_strings:
            ai = es.ai.ai
            if ai in ("01", "02") and es.gtin is not None:
                gtin14 = es.gtin.as_gtin_14()
            elif ai == "10":
                batch = es.value
            elif ai == "17" and es.date is not None:
                expiry = es.date
            elif ai == "21":
                serial = es.value
            elif ai.startswith("310") and es.decimal is not None:
                weight_kg = es.decimal
            elif ai.startswith("392") and es.decimal is not None:
                price = es.decimal
        return BarcodeInfo(
            raw=data,
            kind="gs1",
            gtin=gtin14,
            lookup_gtin=gtin14,
            weight_kg=weight_kg,
            weight_g=int(weight_kg * 1000) if weight_kg is not None else None,
            price=price,
            batch=batch,
            expiry=expiry,
            serial=serial,
            symbology=sym,
        )
    error = None
    if data.isdigit() and len(data) in _GTIN_LENGTHS:
        error = result.gtin_error or "invalid GTIN"
    return BarcodeInfo(raw=data, kind="other", symbology=sym, error=error)


def resolve(info: BarcodeInfo, lookup: CatalogLookup) -> Resolution:
    """Find the SKU for a scan: GTIN table, then SKU, then aliases."""
    if info.lookup_gtin is not None:
        sku = lookup.sku_for_gtin(info.lookup_gtin)
        if sku is None and info.gtin is not None and info.gtin != info.lookup_gtin:
            sku = lookup.sku_for_gtin(info.gtin)
        if sku is not None:
            return Resolution(info, sku, "gtin")
    if lookup.has_sku(info.raw):
        return Resolution(info, info.raw, "sku")
    alias = lookup.sku_for_alias(info.raw)
    if alias is not None:
        return Resolution(info, alias, "alias")
    if info.gtin is not None:
        reason = "unknown_gtin"
    elif info.error is not None:
        reason = "invalid_code"
    else:
        reason = "unknown_code"
    return Resolution(info, None, None, reason)
