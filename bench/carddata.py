"""The card-data guard's precision over generated corpora, and its speed.

Run: ``.venv/bin/python -m bench.carddata [--quick|--tiny]`` (or ``python -m bench --only
carddata``).

* **False positives**: valid GTINs that :func:`drivers.carddata.is_card_data` takes for
  card data.  The corpus covers every GS1 prefix: for each 3-digit prefix 000-999, GTIN-13s
  (RCN 02/20-29, ISBN 978/979, coupons included); GTIN-8s over every leading 2 digits;
  UPC-A (GTIN-12) over every number-system digit; GTIN-14s with each indicator digit 0-9;
  each GTIN also as an AIM-prefixed scan (``]E0``/``]C1 01…``), inside a GS1 element
  string with lot and expiry, and twice on one line of text.  Target: 0.  Beside it,
  the rule the guard replaced (any 13-19 digit run with a brand prefix and a valid Luhn
  sum, the catalog unknown) on the same bare GTINs: what "naive" costs.
* **Misses**: test PANs that the guard lets through.  Every scheme of
  :data:`drivers.carddata.BRANDS`, every length it issues from 15 to 19, every prefix
  range's low and high end plus random prefixes inside, each with a valid Luhn digit;
  each bare, grouped by 4 with spaces and dashes, embedded in text (``X4111…``), and as
  track 1 and track 2 data.  Target: 0.
* **Speed**: codes/s of the guard against a bare Luhn check of the same codes (the
  cheapest conceivable test), with the load average.
"""

from __future__ import annotations

import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench.common import Row
from drivers.carddata import BRANDS, card_brand, is_card_data, is_valid_gtin, luhn_valid

SEED = 20261204
_OLD_RUN = re.compile(r"\d(?:[ -]?\d){12,18}")


def gs1_check(body: str) -> str:
    total = sum((ord(ch) - 48) * (3 if pos % 2 == 0 else 1)
                for pos, ch in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def luhn_check(body: str) -> str:
    for digit in "0123456789":
        if luhn_valid(body + digit):
            return digit
    raise AssertionError("unreachable")


def gtin_corpus(total: int, seed: int = SEED) -> Iterator[str]:
    """``total`` valid GTINs spread over every GS1 prefix (13: 70 %, 8/12/14: 10 % each)."""
    rng = random.Random(seed)
    n13 = total * 7 // 10
    n_other = (total - n13) // 3
    for i in range(n13):
        prefix = f"{i % 1000:03d}"
        body = prefix + "".join(rng.choice("0123456789") for _ in range(9))
        yield body + gs1_check(body)
    for i in range(n_other):
        body = f"{i % 100:02d}" + "".join(rng.choice("0123456789") for _ in range(5))
        yield body + gs1_check(body)
    for i in range(n_other):
        body = f"{i % 10}" + "".join(rng.choice("0123456789") for _ in range(10))
        yield body + gs1_check(body)
    for i in range(total - n13 - 2 * n_other):
        body = f"{i % 10}{(i // 10) % 1000:03d}" + "".join(
            rng.choice("0123456789") for _ in range(9))
        yield body + gs1_check(body)


def pan_corpus(per_range: int, seed: int = SEED) -> Iterator[tuple[str, str]]:
    """(brand, PAN) for every brand, length 15-19 and prefix range; valid Luhn each."""
    rng = random.Random(seed)
    for brand, (ranges, lengths) in BRANDS.items():
        for length in sorted(n for n in lengths if n >= 15):
            for low, high in ranges:
                width = len(low)
                starts = {int(low), int(high)} | {rng.randint(int(low), int(high))
                                                  for _ in range(per_range)}
                for start in sorted(starts):
                    for _ in range(max(1, per_range // len(starts))):
                        body = f"{start:0{width}d}" + "".join(
                            rng.choice("0123456789") for _ in range(length - width - 1))
                        pan = body + luhn_check(body)
                        if card_brand(pan) is not None:
                            yield brand, pan


def pan_forms(pan: str) -> Iterator[str]:
    grouped = " ".join(pan[i:i + 4] for i in range(0, len(pan), 4))
    yield pan
    yield grouped
    yield grouped.replace(" ", "-")
    yield f"X{pan}"
    yield f"card {pan} thanks"
    yield f"%B{pan}^DOE/JOHN^2512101000000?"
    yield f";{pan}=25121010000000?"
    yield f"{pan}=2512101"  # track 2 with the sentinel stripped by the reader


def gtin_forms(gtin: str) -> Iterator[str]:
    yield gtin
    yield f"]E0{gtin}"
    yield f"01{gtin.zfill(14)}17351231\x1d10LOT{gtin[-4:]}"
    yield f"{gtin} {gtin}"  # two codes on one line of text (two EAN-8s make 16 digits)


def old_rule(code: str) -> bool:
    """The guard this one replaced, without a catalog: any 13-19 digit run (spaces and
    dashes allowed) with a brand prefix and a valid Luhn sum."""
    for match in _OLD_RUN.finditer(code):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and card_brand13(digits) and luhn_valid(digits):
            return True
    return False


def card_brand13(digits: str) -> bool:
    if card_brand(digits) is not None:
        return True
    # the old table also gave 13-digit Visa and Maestro
    return (len(digits) == 13 and digits[0] == "4") or (
        len(digits) == 13 and (digits[:2] == "50" or "56" <= digits[:2] <= "69"))


def _rate(fn: Callable[[str], bool], codes: list[str]) -> float:
    t0 = time.perf_counter()
    for code in codes:
        fn(code)
    return len(codes) / (time.perf_counter() - t0)


def run(quick: bool = False, tiny: bool = False) -> dict[str, float | int | str]:
    gtins_total = 50_000 if tiny else 1_000_000
    per_range = 5 if tiny else 40
    started = time.perf_counter()
    gtins = 0
    gtin_codes = 0
    false_positives: list[str] = []
    old_false_positives = 0
    sample: list[str] = []
    for gtin in gtin_corpus(gtins_total):
        if not is_valid_gtin(gtin):
            raise AssertionError(f"corpus bug: {gtin}")
        gtins += 1
        for form in gtin_forms(gtin):
            gtin_codes += 1
            if is_card_data(form):
                false_positives.append(form)
        if old_rule(gtin):
            old_false_positives += 1
        if len(sample) < 20_000:
            sample.append(gtin)
    pans = 0
    pan_codes = 0
    misses: list[str] = []
    brands: set[str] = set()
    for brand, pan in pan_corpus(per_range):
        pans += 1
        brands.add(brand)
        for form in pan_forms(pan):
            pan_codes += 1
            if not is_card_data(form):
                misses.append(f"{brand}:{len(pan)}")
    guard_per_s = _rate(is_card_data, sample)
    luhn_per_s = _rate(luhn_valid, sample)
    return {
        "gtins": gtins,
        "gtin_codes": gtin_codes,
        "false_positives": len(false_positives),
        "false_positive_examples": ", ".join(repr(c) for c in false_positives[:5]),
        "old_rule_false_positives": old_false_positives,
        "old_rule_false_positive_rate": old_false_positives / gtins,
        "pans": pans,
        "pan_codes": pan_codes,
        "schemes": len(brands),
        "misses": len(misses),
        "miss_examples": ", ".join(misses[:5]),
        "guard_codes_per_s": guard_per_s,
        "bare_luhn_codes_per_s": luhn_per_s,
        "load_average": os.getloadavg()[0],
        "seconds": time.perf_counter() - started,
    }


def rows(f: dict[str, Any]) -> list[Row]:
    """The suite's table rows (``python -m bench --only carddata``)."""
    g = "carddata"
    return [
        Row(g, f"valid GTINs taken for card data (of {f['gtins']:,} GTINs, "
               f"{f['gtin_codes']:,} codes)", f["false_positives"], "codes",
            f["old_rule_false_positives"], "old rule, no catalog (bare GTINs)", "0",
            f["false_positives"] == 0),
        Row(g, f"test PANs let through (of {f['pans']:,} PANs, {f['schemes']} schemes, "
               f"{f['pan_codes']:,} forms)", f["misses"], "codes", None, "", "0",
            f["misses"] == 0),
        Row(g, "guard throughput", f["guard_codes_per_s"], "codes/s",
            f["bare_luhn_codes_per_s"], "bare Luhn check"),
    ]


def main(argv: list[str]) -> int:
    figures = run(quick="--quick" in argv, tiny="--tiny" in argv)
    for key, value in figures.items():
        print(f"{key:32} {value:,.4g}" if isinstance(value, float) else f"{key:32} {value}")
    return 0 if figures["false_positives"] == 0 and figures["misses"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
