"""Money as exact decimals in the store currency (PROTOCOL §2: decimal strings, no floats)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final

from sync.wire import MONEY_RE

# ISO 4217 minor units that differ from 2; every other currency has cents.
_EXPONENTS: Final = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


def minor_units(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def parse_money(text: str) -> Decimal:
    """A protocol money string to a Decimal; ValueError for anything else."""
    if not isinstance(text, str) or MONEY_RE.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not a decimal money string like '12.50'")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"{text!r} is not a decimal") from exc


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round half up to the currency's minor unit (how a till rounds a line)."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)


def format_money(amount: Decimal, currency: str) -> str:
    """The wire form: fixed point with the currency's minor units, never an exponent."""
    return f"{quantize(amount, currency):f}"


def format_price(amount: Decimal) -> str:
    """A unit price as given (it may carry more digits than the currency, e.g. per gram)."""
    text = f"{amount:f}"
    return "0" if text in ("-0", "") else text
