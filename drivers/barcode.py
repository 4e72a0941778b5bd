"""Barcode interpretation (pure): the one reading of a scanned code, built on ``biip``.

Every path that meets a code (each scanner mode, baskets, sessions, the local API)
calls :func:`interpret`, so a code means the same thing wherever it is scanned.  It
reads, with biip's parsers (no parser of ours for what biip reads):

* AIM symbology identifiers (``]E0`` EAN-13, ``]C1`` GS1-128, ``]d2`` GS1 DataMatrix,
  ``]Q3`` GS1 QR, ``]e0`` GS1 DataBar, ...);
* GS1 element strings, with GS (FNC1) before, between or after fields, and in their
  human-readable form ``(01)…(17)…``;
* GS1 Digital Link URIs as QR codes carry them, on any domain
  (``https://id.gs1.org/01/09506000134352/10/ABC123?17=250101``); scheme and host
  are case-insensitive;
* EAN-13/EAN-8/UPC-A/UPC-E, and in-store variable-measure codes (RCN, prefixes 02 and
  20-29) by the region's rules (``store.rcn_region``), or by a :class:`RcnLayout` of
  the store's own for a region biip has no rule for.

:func:`interpret` never raises: what it cannot read comes back as ``kind="other"``
with ``error`` (biip's message) and ``error_code`` (stable: ``invalid_gtin``,
``invalid_gs1``, ``invalid_digital_link``).

Variable-measure lookup key: for an RCN whose rules define a price/weight part,
:attr:`BarcodeInfo.lookup_gtin` is the RCN with that part *zeroed and the check digit
recomputed* (biip's ``Rcn.without_variable_measure``, or the same for a store layout),
as a GTIN-14; e.g. Sweden ``2302120012344`` (1.234 kg of item 02120) ->
``02302120000006``.  That is the number a store registers for the item.

:func:`resolve` tries, in order: the GTIN table (``lookup.sku_for_gtin``), the raw code
as a SKU (``lookup.has_sku``), then aliases (``lookup.sku_for_alias``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias
from urllib.parse import urlsplit, urlunsplit

# biip is imported on the first code read, not at start: importing any of it loads its GS1
# prefix tables (~80 ms of CPU, ~9 MiB kept), which a store that scans nothing yet does
# not need. Once loaded it stays loaded (Python keeps the modules).
if TYPE_CHECKING:
    from biip import ParseConfig
    from biip.gs1_element_strings import GS1ElementString
    from biip.gtin import Gtin
    from biip.rcn import RcnRegion

__all__ = [
    "RCN_REGIONS",
    "BarcodeInfo",
    "BarcodeKind",
    "CatalogLookup",
    "RcnLayout",
    "RcnRegion",
    "Resolution",
    "interpret",
    "region_from_name",
    "resolve",
]

BarcodeKind: TypeAlias = Literal[
    "gtin", "variable_weight", "variable_price", "rcn", "gs1", "digital_link", "other"
]
_GS1_SYMBOLOGIES = {"]C1", "]d2", "]Q3", "]e0", "]J1"}
_GTIN_LENGTHS = (6, 7, 8, 12, 13, 14)
GS = "\x1d"
_RCN_REGION_NAMES: dict[str, str] = {
    "dk": "DENMARK", "ee": "ESTONIA", "fi": "FINLAND", "de": "GERMANY",
    "gb": "GREAT_BRITAIN", "lv": "LATVIA", "lt": "LITHUANIA", "no": "NORWAY", "se": "SWEDEN",
}
"""biip's ``RcnRegion`` (value -> name), spelled out so that validating a configuration does
not load biip; tests/drivers/test_barcode.py checks it equals biip's enum."""
RCN_REGIONS: tuple[str, ...] = tuple(_RCN_REGION_NAMES)
"""The region codes biip has variable-measure rules for (``dk``, ``ee``, … ``se``)."""


def __getattr__(name: str) -> Any:
    """``RcnRegion`` (biip's enum) is imported when first asked for (PEP 562)."""
    if name == "RcnRegion":
        from biip.rcn import RcnRegion  # noqa: PLC0415 -- lazy: see the imports above

        return RcnRegion
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, slots=True)
class RcnLayout:
    """A store's own variable-measure layout for an EAN-13 prefix biip has no rule for.

    ``prefix`` + item reference + ``value_digits`` digits of the measure + check digit;
    the value is read as ``int(digits) / 10**decimals`` (kg for ``weight``, money for
    ``price``).  No price check digit inside the value (layouts that carry one are the
    ones biip knows).
    """

    prefix: str
    measure: Literal["weight", "price"]
    value_digits: int
    decimals: int


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
    batch: str | None = None  # AI 10
    expiry: dt.date | None = None  # AI 17
    best_before: dt.date | None = None  # AI 15
    serial: str | None = None  # AI 21
    symbology: str | None = None
    error: str | None = None
    error_code: str | None = None


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


def region_code(name: str | None) -> str | None:
    """``"se"``/``"SWEDEN"`` -> ``"se"``; None/empty -> None; ValueError if unknown.

    Does not load biip (a configuration is checked with this at start)."""
    if not name:
        return None
    wanted = name.lower()
    for value, region_name in _RCN_REGION_NAMES.items():
        if wanted in (value, region_name.lower()):
            return value
    raise ValueError(f"unknown RCN region {name!r}; one of {', '.join(RCN_REGIONS)}")


def region_from_name(name: str | None) -> RcnRegion | None:
    """``"se"``/``"SWEDEN"`` -> RcnRegion.SWEDEN; None/empty -> None; ValueError if unknown."""
    code = region_code(name)
    if code is None:
        return None
    from biip.rcn import RcnRegion  # noqa: PLC0415 -- lazy: see the imports above

    return RcnRegion(code)


def _check_digit(payload: str) -> str:
    from biip.checksums import gs1_standard_check_digit  # noqa: PLC0415 -- lazy

    return str(gs1_standard_check_digit(payload))


def _from_layout(raw: str, g14: str, layout: RcnLayout, symbology: str | None) -> BarcodeInfo:
    value_at = 12 - layout.value_digits
    value = Decimal(int(raw[value_at:12])).scaleb(-layout.decimals)
    payload = raw[:value_at] + "0" * layout.value_digits
    lookup = (payload + _check_digit(payload)).zfill(14)
    if layout.measure == "weight":
        return BarcodeInfo(raw=raw, kind="variable_weight", gtin=g14, lookup_gtin=lookup,
                           weight_kg=value, weight_g=int(value * 1000), symbology=symbology)
    return BarcodeInfo(raw=raw, kind="variable_price", gtin=g14, lookup_gtin=lookup,
                       price=value, symbology=symbology)


def _from_gtin(raw: str, gtin: Gtin, symbology: str | None,
               layouts: tuple[RcnLayout, ...]) -> BarcodeInfo:
    from biip.rcn import Rcn  # noqa: PLC0415 -- lazy: see the imports above

    g14 = gtin.as_gtin_14()
    if not isinstance(gtin, Rcn):
        return BarcodeInfo(raw=raw, kind="gtin", gtin=g14, lookup_gtin=g14, symbology=symbology)
    if len(raw) == 13:
        for layout in layouts:
            if raw.startswith(layout.prefix):
                return _from_layout(raw, g14, layout, symbology)
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
    return BarcodeInfo(raw=raw, kind=kind, gtin=g14, lookup_gtin=lookup, weight_kg=gtin.weight,
                       weight_g=weight_g, price=gtin.price, count=gtin.count,
                       symbology=symbology)


def _from_fields(raw: str, kind: BarcodeKind, fields: list[GS1ElementString],
                 symbology: str | None) -> BarcodeInfo:
    gtin14: str | None = None
    batch = serial = None
    expiry = best_before = None
    weight_kg = price = None
    for es in fields:
        ai = es.ai.ai
        if ai in ("01", "02") and es.gtin is not None:
            gtin14 = es.gtin.as_gtin_14()
        elif ai == "10":
            batch = es.value
        elif ai == "17" and es.date is not None:
            expiry = es.date
        elif ai == "15" and es.date is not None:
            best_before = es.date
        elif ai == "21":
            serial = es.value
        elif ai.startswith("310") and es.decimal is not None:
            weight_kg = es.decimal
        elif ai.startswith("392") and es.decimal is not None:
            price = es.decimal
    return BarcodeInfo(
        raw=raw, kind=kind, gtin=gtin14, lookup_gtin=gtin14, weight_kg=weight_kg,
        weight_g=int(weight_kg * 1000) if weight_kg is not None else None, price=price,
        batch=batch, expiry=expiry, best_before=best_before, serial=serial,
        symbology=symbology,
    )


def _split_aim(code: str) -> tuple[str, str | None]:
    if len(code) >= 3 and code[0] == "]" and code[1].isalpha() and code[2].isalnum():
        return code[3:], code[:3]
    return code, None


def _normalise_url(text: str) -> str:
    """Scheme and host lower-cased (RFC 3986: they are case-insensitive)."""
    parts = urlsplit(text)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query,
                       parts.fragment))


def _digital_link(data: str, symbology: str | None, config: ParseConfig) -> BarcodeInfo:
    from biip import parse  # noqa: PLC0415 -- lazy: see the imports above

    try:
        url = _normalise_url(data)
        result = parse(url, config=config)
    except Exception as exc:  # noqa: BLE001 -- biip raises ParseError (others on junk)
        return BarcodeInfo(raw=data, kind="other", symbology=symbology, error=str(exc),
                           error_code="invalid_digital_link")
    link = result.gs1_digital_link_uri
    if link is None:
        error = result.gs1_digital_link_uri_error or "not a GS1 Digital Link URI"
        return BarcodeInfo(raw=data, kind="other", symbology=symbology, error=error,
                           error_code="invalid_digital_link")
    if result.gtin_error:
        return BarcodeInfo(raw=data, kind="other", symbology=symbology, error=result.gtin_error,
                           error_code="invalid_gtin")
    return _from_fields(data, "digital_link", list(link.element_strings), symbology)


def interpret(code: str, region: RcnRegion | str | None = None,
              layouts: tuple[RcnLayout, ...] = ()) -> BarcodeInfo:
    """Interpret one scanned code (AIM id prefix allowed; GS separates GS1 fields)."""
    from biip import ParseConfig, parse  # noqa: PLC0415 -- lazy: see the imports above
    from biip.gs1_messages import GS1Message  # noqa: PLC0415

    reg = region_from_name(region) if isinstance(region, str) else region
    config = ParseConfig(rcn_region=reg)
    data, sym = _split_aim(code)
    if data[:8].lower().startswith(("https://", "http://")):
        return _digital_link(data, sym, config)
    if data.startswith("(") and sym is None:
        try:
            message = GS1Message.parse_hri(data)
        except Exception as exc:  # noqa: BLE001 -- biip raises ParseError (others on junk)
            return BarcodeInfo(raw=data, kind="other", error=str(exc), error_code="invalid_gs1")
        return _from_fields(data, "gs1", list(message.element_strings), None)
    plain = data.isdigit() and len(data) in _GTIN_LENGTHS and sym not in _GS1_SYMBOLOGIES
    try:
        result = parse(data if sym is None else sym + data, config=config)
    except Exception as exc:  # noqa: BLE001 -- biip raises ParseError (and others on junk)
        code_ = "invalid_gtin" if plain else "invalid_gs1"
        return BarcodeInfo(raw=data, kind="other", symbology=sym, error=str(exc),
                           error_code=code_ if data.isdigit() or GS in data else None)
    if plain and result.gtin is not None:
        return _from_gtin(data, result.gtin, sym, layouts)
    msg = result.gs1_message
    if msg is not None and not plain:
        return _from_fields(data.strip(GS), "gs1", list(msg.element_strings), sym)
    if plain:
        return BarcodeInfo(raw=data, kind="other", symbology=sym,
                           error=result.gtin_error or "invalid GTIN", error_code="invalid_gtin")
    if sym in _GS1_SYMBOLOGIES or GS in data:
        return BarcodeInfo(raw=data, kind="other", symbology=sym,
                           error=result.gs1_message_error or "not a GS1 element string",
                           error_code="invalid_gs1")
    led_by_gtin = data[:2] in ("01", "02") and data[2:16].isdigit() and len(data) > 16
    if result.gs1_message_error and ((data.isdigit() and len(data) > 14) or led_by_gtin):
        # a long all-digit code, or one led by AI 01/02 and a GTIN, is a GS1 element string
        # or nothing (AI 17 "251399" lands here)
        return BarcodeInfo(raw=data, kind="other", symbology=sym,
                           error=result.gs1_message_error, error_code="invalid_gs1")
    return BarcodeInfo(raw=data, kind="other", symbology=sym)


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
