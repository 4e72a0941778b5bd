"""EM4100 (125 kHz) reader frames: RDM6300 and ID-12LA/ID-20LA.

* RDM6300: ``02`` + 10 hex ID chars + 2 hex checksum + ``03`` (14 bytes).
* ID-12LA/ID-20LA: ``02`` + 10 hex ID + 2 hex checksum + ``0D 0A`` + ``03`` (16 bytes).

The checksum is the XOR of the five ID bytes.  Readers repeat the frame while a
card stays in the field; :class:`drivers.presence.PresenceTracker` turns that into
present/gone events.  The byte loop is :class:`drivers.framebuffer.FrameBuffer`; see
:mod:`drivers.framing` for the parser contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from drivers.framebuffer import FrameBuffer, FrameSpec
from drivers.framing import Rejected

__all__ = ["Em4100Frame", "Em4100Parser", "encode_em4100"]

STX = 0x02
ETX = 0x03
_CACHE_MAX = 1024
_HEX_DIGITS = b"0123456789ABCDEFabcdef"


@dataclass(frozen=True, slots=True)
class Em4100Frame:
    """One valid read: ``tag_id`` is the 10 upper-case hex characters."""

    tag_id: str


def encode_em4100(tag_id: str, variant: Literal["rdm6300", "id12la"] = "rdm6300") -> bytes:
    """Wire bytes for ``tag_id`` (10 hex chars) as the given reader sends them."""
    raw = bytes.fromhex(tag_id)
    if len(raw) != 5:
        raise ValueError("EM4100 tag id is 5 bytes (10 hex characters)")
    cs = raw[0] ^ raw[1] ^ raw[2] ^ raw[3] ^ raw[4]
    body = (tag_id.upper() + f"{cs:02X}").encode("ascii")
    tail = b"\r\n\x03" if variant == "id12la" else b"\x03"
    return b"\x02" + body + tail


class Em4100Parser:
    """Sans-IO parser for RDM6300 / ID-12LA frames (see :mod:`drivers.framing`)."""

    def __init__(self, variant: Literal["rdm6300", "id12la"] = "rdm6300") -> None:
        self.variant = variant
        self._tail = b"\r\n\x03" if variant == "id12la" else b"\x03"
        self._buffer = FrameBuffer(FrameSpec(
            start=STX, size=13 + len(self._tail), decode=self._decode, cache_max=_CACHE_MAX))

    def feed(self, data: bytes) -> list[Em4100Frame | Rejected]:
        return self._buffer.feed(data)

    @property
    def pending(self) -> int:
        """Bytes held for an unfinished frame (bounded by the longest valid frame)."""
        return self._buffer.pending

    def _decode(self, raw: bytes) -> Em4100Frame | str:
        if raw[13:] != self._tail:
            return "bad_frame_end"
        payload = raw[1:13]
        if payload.translate(None, _HEX_DIGITS):  # anything left is not a hex digit
            return "bad_hex"
        v = bytes.fromhex(payload.decode("ascii"))
        if v[0] ^ v[1] ^ v[2] ^ v[3] ^ v[4] != v[5]:
            return "bad_checksum"
        return Em4100Frame(raw[1:11].decode("ascii").upper())
