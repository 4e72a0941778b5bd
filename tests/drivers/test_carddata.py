"""Card data is recognised and dropped; false-positive rate on real product codes measured."""

from __future__ import annotations

import random

import pytest

from drivers.carddata import card_brand, is_card_data, is_valid_gtin, luhn_valid, make_filter
from drivers.epc import gs1_check_digit

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


def _ean(rng: random.Random, n: int, prefix: str = "") -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(n - 1 - len(prefix)))
    return body + str(gs1_check_digit(body))


def test_false_positive_rate_on_valid_product_codes() -> None:
    rng = random.Random(20261125)
    codes = (
        [_ean(rng, 13) for _ in range(3000)]
        + [_ean(rng, 13, "40") for _ in range(1000)]  # German products: Visa-like prefix
        + [_ean(rng, 8) for _ in range(1000)]
        + [_ean(rng, 12) for _ in range(1000)]  # UPC-A
    )
    assert all(is_valid_gtin(c) for c in codes)
    catalog = {c.zfill(14) for c in codes}
    absent = [c for c in codes if is_card_data(c)]
    present = [c for c in codes if make_filter(catalog.__contains__)(c)]
    rate_all = len(absent) / len(codes)
    rate13 = sum(len(c) == 13 and not c.startswith("40") for c in absent) / 3000
    rate40 = sum(c.startswith("40") for c in absent) / 1000
    print(
        f"card-data false positives: no catalog {rate_all:.2%} overall "
        f"(random EAN-13 {rate13:.2%}, EAN-13 prefix 40 {rate40:.2%}, EAN-8/UPC-A 0 by length); "
        f"with catalog {len(present) / len(codes):.2%}"
    )
    # Bounds: only 13-digit codes can match (EAN-8/UPC-A are too short); of the
    # 13-digit prefix space 4, 50, 56-69 = 25% carry a brand with 13-digit PANs, and
    # Luhn passes ~1/10 of them: expected 2.5% for random EAN-13s (sigma ~0.3% at
    # n=3000) and 10% for prefix-4 codes (sigma ~1%).
    assert all(len(c) == 13 for c in absent)
    assert rate13 < 0.04
    assert rate40 < 0.14
    assert present == []  # known products are never dropped
