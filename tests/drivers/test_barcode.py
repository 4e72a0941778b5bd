"""Barcode interpretation (biip) and resolution order."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import barcode
from drivers.barcode import (
    RcnLayout,
    RcnRegion,
    interpret,
    region_code,
    region_from_name,
    resolve,
)


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


@given(st.text(max_size=120) | st.sampled_from([
    "https://", "http://x/01/", "(01)", "(", "]d2\x1d", "]Q3https://id.gs1.org/01/1",
    "HTTPS://ID.GS1.ORG/01/09506000134352/10/\x00", "0109506000134352172513991",
    "(17)251399", "https://id.gs1.org/01/09506000134352?17=991399"]))
def test_interpret_never_raises_on_any_text(text: str) -> None:
    info = interpret(text, "se", (RcnLayout("23", "weight", 5, 3),))
    assert info.raw is not None
    assert (info.error_code is None) or info.kind == "other"


def test_two_dimensional_codes_and_digital_links() -> None:
    dm = interpret("]d2\x1d0109506000134352\x1d15260101\x1d10L1\x1d")
    assert (dm.kind, dm.gtin, dm.best_before, dm.batch) == (
        "gs1", "09506000134352", dt.date(2026, 1, 1), "L1")
    hri = interpret("(01)09506000134352(21)SN-1")
    assert (hri.kind, hri.serial) == ("gs1", "SN-1")
    dl = interpret("HTTPS://Example.COM/a/b/01/09506000134352/10/L%2F1?17=351231")
    assert (dl.kind, dl.gtin, dl.expiry) == ("digital_link", "09506000134352",
                                             dt.date(2035, 12, 31))
    bad = interpret("]C10109506000134352172513991" + "0ABC")
    assert (bad.kind, bad.error_code) == ("other", "invalid_gs1")
    assert "AI (17)" in (bad.error or "")
    assert interpret("https://id.gs1.org/01/09506000134353").error_code == "invalid_gtin"
    assert interpret("https://example.com/not-gs1").error_code == "invalid_digital_link"


def test_a_store_layout() -> None:
    layouts = (RcnLayout("23", "weight", 5, 3), RcnLayout("28", "price", 4, 2))
    w = interpret("2312345002501", None, layouts)
    assert (w.kind, w.weight_g, w.lookup_gtin) == ("variable_weight", 250, "02312345000002")
    p = interpret("2812345012345", "se", layouts)  # the layout wins over Sweden's rule
    assert (p.kind, p.price, p.lookup_gtin) == ("variable_price", Decimal("12.34"),
                                                "02812345000007")


def test_the_region_table_is_biips() -> None:
    """drivers.barcode spells biip's regions out (so a config check does not load biip)."""
    assert {r.value: r.name for r in RcnRegion} == barcode._RCN_REGION_NAMES
    assert region_code("SWEDEN") == "se"
    assert region_code("Great_Britain") == "gb"
    assert region_code("") is None
    with pytest.raises(ValueError, match="unknown RCN region"):
        region_code("atlantis")
