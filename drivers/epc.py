"""SGTIN-96 EPC decoding (GS1 EPC Tag Data Standard 2.x, section 14.5.1).

Layout (96 bits, big-endian)::

    header(8)=0x30 | filter(3) | partition(3) | company prefix | item reference | serial(38)

The partition value fixes how the 44 bits after it are split between the company
prefix and the item reference (indicator digit + item reference), in bits and in
decimal digits.  The GTIN-14 is ``indicator + company prefix + item reference +
check digit``; the serial is the 38-bit integer in decimal.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PARTITIONS", "Sgtin", "decode_sgtin96", "encode_sgtin96", "gs1_check_digit"]

SGTIN96_HEADER = 0x30

# partition -> (company prefix bits, company prefix digits, item ref bits, item ref digits)
PARTITIONS: dict[int, tuple[int, int, int, int]] = {
    0: (40, 12, 4, 1),
    1: (37, 11, 7, 2),
    2: (34, 10, 10, 3),
    3: (30, 9, 14, 4),
    4: (27, 8, 17, 5),
    5: (24, 7, 20, 6),
    6: (20, 6, 24, 7),
}


@dataclass(frozen=True, slots=True)
class Sgtin:
    gtin: str  # 14 digits
    serial: str
    filter: int
    company_prefix: str


def gs1_check_digit(payload: str) -> int:
    """GS1 mod-10 check digit for a digit string (weights 3,1,3,... from the right)."""
    total = 0
    for pos, ch in enumerate(reversed(payload)):
        total += int(ch) * (3 if pos % 2 == 0 else 1)
    return (10 - total % 10) % 10


def decode_sgtin96(epc: bytes) -> Sgtin | None:
    """Decode an SGTIN-96 EPC; None if ``epc`` is not a valid SGTIN-96."""
    if len(epc) != 12 or epc[0] != SGTIN96_HEADER:
        return None
    value = int.from_bytes(epc, "big")
    filt = (value >> 85) & 0x7
    partition = (value >> 82) & 0x7
    layout = PARTITIONS.get(partition)
    if layout is None:
        return None
    _cp_bits, cp_digits, ir_bits, ir_digits = layout
    serial = value & ((1 << 38) - 1)
    rest = (value >> 38) & ((1 << 44) - 1)
    item_ref = rest & ((1 << ir_bits) - 1)
    company = rest >> ir_bits
    if company >= 10**cp_digits or item_ref >= 10**ir_digits:
        return None
    cp = f"{company:0{cp_digits}d}"
    ir = f"{item_ref:0{ir_digits}d}"
    payload13 = ir[0] + cp + ir[1:]
    gtin = payload13 + str(gs1_check_digit(payload13))
    return Sgtin(gtin=gtin, serial=str(serial), filter=filt, company_prefix=cp)


def encode_sgtin96(gtin14: str, serial: int, company_prefix_digits: int, filt: int = 1) -> bytes:
    """Inverse of :func:`decode_sgtin96` (used by the simulator and tests)."""
    partition = next(p for p, lay in PARTITIONS.items() if lay[1] == company_prefix_digits)
    cp_bits, cp_digits, ir_bits, _ir_digits = PARTITIONS[partition]
    if len(gtin14) != 14 or not gtin14.isdigit():
        raise ValueError("gtin14 must be 14 digits")
    if not 0 <= serial < 1 << 38:
        raise ValueError("serial does not fit in 38 bits")
    company = int(gtin14[1 : 1 + cp_digits])
    item_ref = int(gtin14[0] + gtin14[1 + cp_digits : 13])
    value = SGTIN96_HEADER
    value = (value << 3) | filt
    value = (value << 3) | partition
    value = (value << cp_bits) | company
    value = (value << ir_bits) | item_ref
    value = (value << 38) | serial
    return value.to_bytes(12, "big")
