"""Common pieces of the sans-IO parsers.

Parser contract (every parser in :mod:`drivers`):

* ``feed(data: bytes) -> list[Frame | Rejected]`` never raises.  Complete frames
  come back in wire order; anything malformed comes back as a :class:`Rejected`
  item carrying a short reason and the offending bytes in hex (truncated to
  :data:`MAX_REJECT_HEX` bytes).
* The internal buffer is bounded (:data:`MAX_BUFFER`, 4 KiB by default).  On
  overflow the parser drops what it holds, reports ``Rejected("overflow")`` and
  resynchronises on the next frame start.
* Any split of the same byte stream yields the same frames (tested with
  hypothesis); the :class:`Rejected` items may differ only for garbage that was
  dropped on overflow.
* Parsers for keyboard-like input (barcode scanners) never put payload bytes in
  ``Rejected.hex``: that input may be card data.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_BUFFER", "MAX_REJECT_HEX", "Rejected"]

MAX_BUFFER = 4096
MAX_REJECT_HEX = 64


@dataclass(frozen=True, slots=True)
class Rejected:
    """A malformed frame or dropped garbage; ``hex`` is the (truncated) bad bytes."""

    reason: str
    hex: str = ""

    @classmethod
    def of(cls, reason: str, data: bytes | bytearray = b"") -> Rejected:
        return cls(reason, bytes(data[:MAX_REJECT_HEX]).hex())
