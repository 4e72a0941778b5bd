"""Card data is recognised and dropped; false-positive rate on real product codes measured."""

from __future__ import annotations

import pytest

from bench.carddata import gtin_corpus, gtin_forms, pan_corpus, pan_forms
from drivers.carddata import (
    BRANDS,
    card_brand,
    is_card_data,
    is_valid_gtin,
    luhn_valid,
    mask_card_data,
    redact,
)

CARDS = [
    "4111111111111111",  # Visa test
    "4222222222222",  # Visa 13
    "5555555555554444",  # MC
    "2223003122003222",  # MC 2-series
    "378282246310005",  # Amex
    "6011111111111117",  # Discover
    "3530111333300000",  # JCB
    "30569309025904",  # Diners 14
    "6759649826438453",  # Maestro
]


@pytest.mark.parametrize("pan", CARDS)
def test_test_pans_are_card_data(pan: str) -> None:
    assert luhn_valid(pan)
    assert card_brand(pan) is not None
    assert is_card_data(pan)
    grouped = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))
    assert is_card_data(grouped)
    assert not is_card_data(pan[:-1] + str((int(pan[-1]) + 1) % 10))  # Luhn fails


@pytest.mark.parametrize(
    "track",
    [
        "%B4111111111111111^DOE/JOHN^25121010000000000000?",
        ";4111111111111111=25121010000000000?",
        "%B6011111111111117^",  # partial read still has the PAN
        "]X0;5555555555554444=2512?",
    ],
)
def test_track_data(track: str) -> None:
    assert is_card_data(track)
    assert is_card_data(track, lambda g: True)  # track data is never a product


def test_not_card_data() -> None:
    for code in [
        "5901234123457"[:12],
        "96385074",
        "hello",
        "ABC-123",
        "01095011010209171719050810AB",
    ]:
        assert not is_card_data(code)


def test_catalog_only_vouches_for_valid_gtins() -> None:
    # 4111111111111111 is not a GTIN (16 digits): the catalog callback is not consulted.
    seen: list[str] = []

    def known(g: str) -> bool:
        seen.append(g)
        return True

    assert is_card_data("4111111111111111", known)
    assert seen == []


def test_no_valid_gtin_is_card_data_and_no_test_pan_is_missed() -> None:
    """The bench's corpora (bench/carddata.py) at a test's size: every GS1 prefix, every
    scheme and length 15-19; the bench runs 1,000,000 GTINs."""
    gtins = list(gtin_corpus(30_000, seed=7))
    assert all(is_valid_gtin(g) for g in gtins)
    taken = [form for g in gtins for form in gtin_forms(g) if is_card_data(form)]
    assert taken == []
    pans = list(pan_corpus(8, seed=7))
    assert {brand for brand, _ in pans} == set(BRANDS)
    missed = [form for _, pan in pans for form in pan_forms(pan) if not is_card_data(form)]
    assert missed == []


@pytest.mark.parametrize("code", [
    "5901234123457",  # the README's EAN-13: passes a 13-digit Maestro's Luhn and prefix
    "4006381333931", "96385074", "036000291452", "10614141000415",
    "]E05901234123457", "0109506000134352172501011" + "0ABC123\x1d21XYZ",
    "https://id.gs1.org/01/09506000134352/10/ABC123?17=250101", "(01)05901234123457",
])
def test_product_codes_are_never_card_data(code: str) -> None:
    assert not is_card_data(code)
    assert mask_card_data(code) == code


@pytest.mark.parametrize(("text", "masked"), [
    ("X4111111111111111", "X[card data removed]"),
    ("pay 4111-1111-1111-1111 now", "pay [card data removed] now"),
    ("%B4111111111111111^DOE/JOHN^2512?", "[card data removed]"),
    ("4111111111111111=2512101", "[card data removed]"),
])
def test_masking_keeps_the_rest(text: str, masked: str) -> None:
    assert is_card_data(text)
    assert mask_card_data(text) == masked
    assert redact({"a": [text, 5]}) == {"a": [masked, 5]}


def test_two_ean8_on_one_line_are_not_one_card_number() -> None:
    # 16 digits with a Visa prefix and a valid Luhn sum once joined: still two products
    pairs = [(a, b) for a in gtin_corpus(3000, seed=3) if len(a) == 8 and a[0] == "4"
             for b in ("96385074", "40123455", "73513537") if luhn_valid(a + b)]
    assert pairs
    assert not any(is_card_data(f"{a} {b}") or is_card_data(f"{a}-{b}") for a, b in pairs)
    assert is_card_data("4111 1111 1111 1111")
    assert is_card_data("3782 822463 10005")
