"""Recognise payment card data so it can be dropped before it is logged or stored.

PCI-DSS 3.3.1 forbids storing track data at all, and a PAN must never end up in
a log line.  :func:`is_card_data` says True for:

* magnetic-stripe track data as keyboard wedges type it: track 1
  ``%B<PAN>^NAME^YYMM...?`` and track 2 ``;<PAN>=YYMM...?`` (also partial reads
  that have the start sentinel, the PAN and the field separator);
* a bare 13-19 digit number (spaces/dashes allowed between digit groups) that
  passes the Luhn check **and** starts with a card brand prefix valid for that
  length (table :data:`BRANDS`), unless it is a valid GTIN the catalog knows
  (``is_known_gtin`` callback, given the GTIN normalised to 14 digits).

Why the brand/length table: about 10% of random digit strings pass Luhn, so Luhn
alone would drop ~10% of unknown 13-digit EANs.  Card numbers only exist at
brand-specific lengths; of the 13-digit space only Visa (4...) and Maestro (50,
56-69) issue 13-digit PANs, so an EAN-13 can be mistaken only when it starts
with 4, 50 or 56-69 *and* passes Luhn (~2.5% of uniformly spread EAN-13s; see
tests/drivers/test_carddata.py for the measured rate).  With the catalog
callback present, known products are never dropped.  EAN-8 and UPC-A (8 and 12
digits) are never taken for card data.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["BRANDS", "card_brand", "is_card_data", "is_valid_gtin", "luhn_valid", "make_filter"]

_TRACK1 = re.compile(r"%B\d{12,19}\^")
_TRACK2 = re.compile(r";\d{12,19}=")
_GROUPED = re.compile(r"\d[\d \-]{11,40}\d")

# brand -> (prefix ranges as (low, high) inclusive on the first len(low) digits, lengths)
BRANDS: dict[str, tuple[tuple[tuple[str, str], ...], frozenset[int]]] = {
    "visa": ((("4", "4"),), frozenset({13, 16, 19})),
    "mastercard": ((("51", "55"), ("2221", "2720")), frozenset({16})),
    "amex": ((("34", "34"), ("37", "37")), frozenset({15})),
    "discover": (
        (("6011", "6011"), ("65", "65"), ("644", "649"), ("622126", "622925")),
        frozenset({16, 17, 18, 19}),
    ),
    "jcb": ((("3528", "3589"),), frozenset({16, 17, 18, 19})),
    "diners": ((("36", "36"), ("38", "39"), ("300", "305"), ("3095", "3095")),
               frozenset({14, 15, 16, 17, 18, 19})),
    "unionpay": ((("62", "62"),), frozenset({16, 17, 18, 19})),
    "maestro": ((("50", "50"), ("56", "69")), frozenset(range(12, 20))),
}  # fmt: skip


def luhn_valid(digits: str) -> bool:
    total = 0
    for pos, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if pos % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """The brand whose prefix and length match ``digits``, or None."""
    n = len(digits)
    for brand, (ranges, lengths) in BRANDS.items():
        if n not in lengths:
            continue
        for low, high in ranges:
            if low <= digits[: len(low)] <= high:
                return brand
    return None


def is_valid_gtin(digits: str) -> bool:
    if len(digits) not in (8, 12, 13, 14) or not digits.isdigit():
        return False
    total = 0
    for pos, ch in enumerate(reversed(digits[:-1])):
        total += (ord(ch) - 48) * (3 if pos % 2 == 0 else 1)
    return (10 - total % 10) % 10 == ord(digits[-1]) - 48


def is_card_data(code: str, is_known_gtin: Callable[[str], bool] | None = None) -> bool:
    """True if ``code`` must be treated as payment card data and dropped."""
    if _TRACK1.search(code) or _TRACK2.search(code):
        return True
    digits = code
    if not code.isdigit():
        if not _GROUPED.fullmatch(code):
            return False
        digits = code.replace(" ", "").replace("-", "")
        if not digits.isdigit():
            return False
    if not 13 <= len(digits) <= 19 or card_brand(digits) is None or not luhn_valid(digits):
        return False
    return not (
        is_known_gtin is not None
        and code.isdigit()
        and is_valid_gtin(digits)
        and is_known_gtin(digits.zfill(14))
    )


def make_filter(is_known_gtin: Callable[[str], bool] | None = None) -> Callable[[str], bool]:
    """A ``card_filter`` for :func:`drivers.open_reader` bound to the catalog callback."""

    def card_filter(code: str) -> bool:
        return is_card_data(code, is_known_gtin)

    return card_filter
