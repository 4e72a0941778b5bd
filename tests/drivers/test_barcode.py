"""Barcode interpretation (biip) and resolution order."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from drivers.barcode import RcnRegion, interpret, region_from_name, resolve


@pytest.mark.parametrize(
    ("code", "gtin"),
    [
        ("5901234123457", "05901234123457"),  # EAN-13
        ("96385074", "00000096385074"),  # EAN-8
        ("036000291452", "00036000291452"),  # UPC-A
        ("425261", "00042100005264"),  # UPC-E
        ("]E05901234123457", "05901234123457"),
    ],
)
def test_gtins(code: str, gtin: str) -> None:
    info = interpret(code)
    assert (info.kind, info.gtin, info.lookup_gtin, info.error) == ("gtin", gtin, gtin, None)


def test_bad_check_digit() -> None:
    info = interpret("5901234123456")
    assert info.kind == "other"
    assert info.gtin is None
    assert info.error is not None
    assert "check digit" in info.error


def test_gs1_element_string_with_gs() -> None:
    info = interpret(
        "]C10100614141999996\x1d3103000189\x1d3922000123\x1d10LOT7\x1d17251231\x1d21SN1"
    )
    assert info.kind == "gs1"
    assert info.symbology == "]C1"
    assert info.gtin == "00614141999996"
    assert (info.weight_kg, info.weight_g, info.price) == (Decimal("0.189"), 189, Decimal("1.23"))
    assert (info.batch, info.expiry, info.serial) == ("LOT7", dt.date(2025, 12, 31), "SN1")


def test_variable_weight_and_price_rcn_sweden() -> None:
    w = interpret("2302120012344", RcnRegion.SWEDEN)
    assert (w.kind, w.weight_g, w.weight_kg) == ("variable_weight", 1234, Decimal("1.234"))
    assert w.lookup_gtin == "02302120000006"  # measure zeroed, check digit recomputed
    p = interpret("2002010012347", "se")
    assert (p.kind, p.price, p.lookup_gtin) == (
        "variable_price",
        Decimal("12.34"),
        "02002010000009",
    )
    n = interpret("2302120012344")  # no region: an RCN, keyed by itself
    assert (n.kind, n.lookup_gtin, n.weight_g) == ("rcn", "02302120012344", None)


def test_region_names() -> None:
    assert region_from_name("se") is RcnRegion.SWEDEN
    assert region_from_name("GERMANY") is RcnRegion.GERMANY
    assert region_from_name(None) is None
    with pytest.raises(ValueError, match="unknown RCN region"):
        region_from_name("atlantis")


@pytest.mark.parametrize("junk", ["", "\x1d\x1d", "]", "]Zz", "0" * 200, "%B^?", "\x00\xff"])
def test_interpret_never_raises(junk: str) -> None:
    assert interpret(junk).raw is not None


@dataclass
class Catalog:
    gtins: dict[str, str] = field(default_factory=dict)
    skus: set[str] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def sku_for_gtin(self, gtin14: str) -> str | None:
        self.calls.append("gtin")
        return self.gtins.get(gtin14)

    def has_sku(self, code: str) -> bool:
        self.calls.append("sku")
        return code in self.skus

    def sku_for_alias(self, code: str) -> str | None:
        self.calls.append("alias")
        return self.aliases.get(code)


def test_resolve_order_and_reasons() -> None:
    cat = Catalog(
        gtins={"05901234123457": "SKU-1", "02302120000006": "CHEESE"},
        skus={"SKU-9", "5901234123457"},
        aliases={"PLU-4011": "BANANA"},
    )
    r = resolve(interpret("5901234123457"), cat)
    assert (r.sku, r.via, cat.calls) == ("SKU-1", "gtin", ["gtin"])  # GTIN beats SKU
    assert resolve(interpret("2302120012344", "se"), cat).sku == "CHEESE"
    assert resolve(interpret("SKU-9"), cat).via == "sku"
    cat.calls.clear()
    r = resolve(interpret("PLU-4011"), cat)
    assert (r.sku, r.via, cat.calls) == ("BANANA", "alias", ["sku", "alias"])
    assert resolve(interpret("96385074"), cat).reason == "unknown_gtin"
    assert resolve(interpret("5901234123456"), cat).reason == "invalid_code"
    assert resolve(interpret("nope"), cat).reason == "unknown_code"
