"""Recognise payment card data so it can be dropped before it is logged, stored or shown.

PCI-DSS 3.3.1 forbids storing track data at all, and a PAN must never end up in
a log line.  :func:`is_card_data` says True when the text holds, anywhere:

* magnetic-stripe track data as keyboard wedges type it: track 1
  ``%B<PAN>^NAME^YYMM...?`` and track 2 ``;<PAN>=YYMM...?``, also with the start
  sentinel missing (``B<PAN>^NAME^``, ``<PAN>=YYMM``) and partial reads that keep the
  PAN and the field separator;
* a run of 15-19 digits (or groups of at most 6 digits split by single spaces or
  dashes, as cards are printed) that passes the Luhn check and starts with a payment
  scheme's prefix valid for that length (table :data:`BRANDS`);
* a 12-14 digit run that passes those checks and is **not** a valid GTIN (legacy
  13-digit Visa, 14-digit Diners, 12-14 digit Maestro).

Why this is exact on product codes: a GTIN has 8, 12, 13 or 14 digits, and a valid
GTIN of those lengths is never taken, whatever its prefix and Luhn sum, so the
catalog need not be consulted (the old rule took ~2.5 % of unknown EAN-13s, e.g.
``5901234123457``, for a Maestro number).  A digit run is *maximal*: the 26 digits of
a GS1 element string (``0109506000134352 17250101 …``) are not a 16-digit PAN.
Measured over generated corpora in ``bench/carddata.py`` (README "Scanning at the
till"): no valid GTIN taken, no test PAN missed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "BRANDS",
    "card_brand",
    "is_card_data",
    "is_pan",
    "is_valid_gtin",
    "luhn_valid",
    "make_filter",
    "mask_card_data",
    "redact",
]

# Track 1: format code B, PAN, "^"; track 2: PAN, "="+YYMM.  Sentinels (% ;) optional.
_TRACK1 = re.compile(r"(?<![0-9])B\d{12,19}\^")
_TRACK2 = re.compile(r"(?<![0-9])\d{12,19}=\d{4}")
_TRACK2_SENTINEL = re.compile(r";\d{12,19}=")
# A maximal digit run, groups joined by one space or dash ("4111 1111-1111 1111").
_RUN = re.compile(r"(?<![0-9])\d+(?:[ -]\d+)*(?![0-9])")
_MAX_GROUP = 6

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
    "unionpay": ((("62", "62"), ("81", "81")), frozenset({16, 17, 18, 19})),
    "maestro": ((("50", "50"), ("56", "69")), frozenset(range(12, 20))),
    "mir": ((("2200", "2204"),), frozenset({16, 17, 18, 19})),
    "rupay": ((("60", "60"), ("65", "65"), ("81", "82"), ("508", "508")), frozenset({16})),
    "verve": ((("506099", "506198"), ("650002", "650027")), frozenset({16, 18, 19})),
    "troy": ((("9792", "9792"),), frozenset({16})),
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
    """A GTIN-8/12/13/14 with a correct GS1 check digit."""
    if len(digits) not in (8, 12, 13, 14) or not digits.isdigit() or not digits.isascii():
        return False
    total = 0
    for pos, ch in enumerate(reversed(digits[:-1])):
        total += (ord(ch) - 48) * (3 if pos % 2 == 0 else 1)
    return (10 - total % 10) % 10 == ord(digits[-1]) - 48


def is_pan(digits: str) -> bool:
    """``digits`` (digits only) is a payment card number by length, prefix and Luhn."""
    n = len(digits)
    if not 12 <= n <= 19 or card_brand(digits) is None or not luhn_valid(digits):
        return False
    return n >= 15 or not is_valid_gtin(digits)


def _runs(text: str) -> list[str]:
    """The digit strings to test: each maximal run of digits, and each window of digit
    groups of at most 6 digits (cards are printed 4-4-4-4, 4-6-5, 4-6-4) joined; two
    EAN-8s separated by a space are not one 16-digit number."""
    out: list[str] = []
    for match in _RUN.finditer(text):
        run = match.group()
        if len(run) < 12:
            continue
        groups = re.split(r"[ -]", run)
        out.extend(group for group in groups if len(group) >= 12)
        if len(groups) == 1:
            continue
        for i in range(len(groups)):
            joined = ""
            for group in groups[i:]:
                if len(group) > _MAX_GROUP:
                    break
                joined += group
                if len(joined) > 19:
                    break
                if len(joined) >= 12:
                    out.append(joined)
    return out


def is_card_data(code: str, is_known_gtin: Callable[[str], bool] | None = None) -> bool:
    """True if ``code`` holds payment card data and must be dropped.

    ``is_known_gtin`` is accepted for compatibility and no longer needed: a valid GTIN
    is never taken for card data, known to the catalog or not.
    """
    del is_known_gtin
    if _TRACK1.search(code) or _TRACK2.search(code) or _TRACK2_SENTINEL.search(code):
        return True
    return any(is_pan(run) for run in _runs(code))


def mask_card_data(text: str, replacement: str = "[card data removed]") -> str:
    """``text`` with each track-data field and PAN-bearing digit run replaced."""
    if not is_card_data(text):
        return text
    if _TRACK1.search(text) or _TRACK2.search(text) or _TRACK2_SENTINEL.search(text):
        return replacement  # track data holds the name and expiry too: drop all of it
    masked = _RUN.sub(lambda m: replacement if any(is_pan(r) for r in _runs(m.group()))
                      else m.group(), text)
    return replacement if is_card_data(masked) else masked


def make_filter(is_known_gtin: Callable[[str], bool] | None = None) -> Callable[[str], bool]:
    """A ``card_filter`` for :func:`drivers.open_reader` (the catalog is no longer needed)."""
    del is_known_gtin
    return is_card_data


def redact(value: Any, replacement: str = "[card data removed]") -> Any:
    """``value`` (str, or dicts/lists/tuples of them, nested) with card data masked;
    other values as they are.  For surfaces that show what others wrote: the event
    stream, ``devices tail``, log lines."""
    if isinstance(value, str):
        return mask_card_data(value, replacement)
    if isinstance(value, dict):
        return {key: redact(item, replacement) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item, replacement) for item in value]
    return value
