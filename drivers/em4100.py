"""EM4100 (125 kHz) reader frames: RDM6300 and ID-12LA/ID-20LA.

* RDM6300: ``02`` + 10 hex ID chars + 2 hex checksum + ``03`` (14 bytes).
* ID-12LA/ID-20LA: ``02`` + 10 hex ID + 2 hex checksum + ``0D 0A`` + ``03`` (16 bytes).

The checksum is the XOR of the five ID bytes.  Readers repeat the frame while a
card stays in the field; :class:`drivers.presence.PresenceTracker` turns that into
present/gone events.  See :mod:`drivers.framing` for the parser contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
        self._flen = 13 + len(self._tail)
        self._buf = bytearray()
        # Valid payloads seen recently -> frame; readers repeat the same card
        # many times a second, so this turns the hot path into one dict lookup.
        self._cache: dict[bytes, Em4100Frame] = {}

    def feed(self, data: bytes) -> list[Em4100Frame | Rejected]:
        # Work on one immutable bytes object: slicing it is a single allocation.
        if self._buf:
            self._buf += data
            b = bytes(self._buf)
        else:
            b = bytes(data)
        out: list[Em4100Frame | Rejected] = []
        append = out.append
        find = b.find
        flen = self._flen
        cache = self._cache
        n = len(b)
        i = find(STX)
        if i < 0:
            if n:
                append(Rejected.of("garbage", b))
            self._buf = bytearray()
            return out
        if i > 0:
            append(Rejected.of("garbage", b[:i]))
        last = n - flen
        while 0 <= i <= last:
            end = i + flen
            raw = b[i:end]
            frame = cache.get(raw)
            if frame is None:
                bad = self._check(raw)
                if bad is not None:
                    # Resync on the next STX after this one.
                    nxt = find(STX, i + 1)
                    append(Rejected.of(bad, b[i : nxt if nxt >= 0 else end]))
                    i = nxt
                    continue
                frame = Em4100Frame(raw[1:11].decode("ascii").upper())
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[raw] = frame
            append(frame)
            i = find(STX, end)
            if i > end:
                append(Rejected.of("garbage", b[end:i]))
        # What is left is one incomplete frame (< flen bytes): the buffer is bounded
        # by construction, whatever the input.
        self._buf = bytearray(b[i:]) if i >= 0 else bytearray()
        return out

    def _check(self, raw: bytes) -> str | None:
        if raw[13:] != self._tail:
            return "bad_frame_end"
        payload = raw[1:13]
        if payload.translate(None, _HEX_DIGITS):  # anything left is not a hex digit
            return "bad_hex"
        v = bytes.fromhex(payload.decode("ascii"))
        if v[0] ^ v[1] ^ v[2] ^ v[3] ^ v[4] != v[5]:
            return "bad_checksum"
        return None
