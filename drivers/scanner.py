"""Serial barcode scanner framing: suffix/prefix/STX-ETX, AIM symbology ids, GS kept.

A scanner sends ``[prefix][AIM id]<data><suffix>`` (or ``STX <data> ETX``).  A code
ends at the configured suffix and also at CR, LF or CRLF whatever the suffix, so two
scans are never merged.  The
AIM symbology identifier is ``]`` + symbology letter + modifier character (``]E0``
EAN-13, ``]C1`` GS1-128, ``]d2`` GS1 DataMatrix, ``]Q3`` GS1 QR, ``]e0`` GS1 DataBar).
GS (0x1D), the FNC1 stand-in that ends variable-length GS1 fields, is kept.
Other control characters are removed.  Bytes are decoded as Latin-1 so no input
can make the parser fail.  Payload bytes never appear in ``Rejected.hex``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from drivers.framing import Rejected
from drivers.lines import DelimitedParser

__all__ = ["SUFFIXES", "ScanFrame", "ScanParser", "split_aim"]

SUFFIXES: dict[str, bytes] = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "TAB": b"\t"}
_AIM = re.compile(r"\][A-Za-z][0-9A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x1c\x1e\x1f\x7f]")
MAX_CODE = 512


@dataclass(frozen=True, slots=True)
class ScanFrame:
    code: str
    symbology: str | None = None


def split_aim(code: str) -> tuple[str, str | None]:
    """``("]E05901234123457")`` -> ``("5901234123457", "]E0")``."""
    if len(code) >= 3 and _AIM.match(code):
        return code[3:], code[:3]
    return code, None


class ScanParser:
    def __init__(
        self,
        suffix: Literal["CR", "LF", "CRLF", "TAB"] = "CR",
        *,
        prefix: str = "",
        stx_etx: bool = False,
        strip_aim: bool = True,
        max_code: int = MAX_CODE,
    ) -> None:
        self._lines = DelimitedParser(
            SUFFIXES[suffix], stx_etx=stx_etx, max_line=max_code + len(prefix) + 3, redact=True,
            any_eol=True,
        )
        self.prefix = prefix
        self.strip_aim = strip_aim

    def feed(self, data: bytes) -> list[ScanFrame | Rejected]:
        return self._lines.feed_each(data, self._frame)

    def _frame(self, line: bytes) -> ScanFrame | Rejected | None:
        text = _CONTROL.sub("", line.decode("latin-1")).strip(" ")
        if not text:
            return None
        if self.prefix:
            if not text.startswith(self.prefix):
                return Rejected("missing_prefix")
            text = text[len(self.prefix) :]
        symbology = None
        if self.strip_aim:
            text, symbology = split_aim(text)
        if not text:
            return Rejected("empty_code")
        return ScanFrame(text, symbology)
