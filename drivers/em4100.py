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
        buf = self._buf
        buf += data
        out: list[Em4100Frame | Rejected] = []
        flen = self._flen
        tail = self._tail
        cache = self._cache
        n = len(buf)
        start = 0
        i = buf.find(STX)
        if i < 0:
            if n:
                out.append(Rejected.of("garbage", buf))
            buf.clear()
            return out
        if i > 0:
            out.append(Rejected.of("garbage", buf[:i]))
        while i >= 0 and i + flen <= n:
            end = i + flen
            payload = bytes(buf[i + 1 : i + 13])
            frame = cache.get(payload)
            if frame is not None and buf[i + 13 : end] == tail:
                out.append(frame)
                start = end
                i = buf.find(STX, end)
                if i > end:
                    out.append(Rejected.of("garbage", buf[end:i]))
                continue
            bad = self._check(payload, buf[i + 13 : end])
            if bad is None:
                frame = Em4100Frame(payload[:10].decode("ascii").upper())
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[payload] = frame
                out.append(frame)
                start = end
                i = buf.find(STX, end)
                if i > end:
                    out.append(Rejected.of("garbage", buf[end:i]))
            else:
                # Resync on the next STX after this one.
                nxt = buf.find(STX, i + 1)
                stop = nxt if nxt >= 0 else min(end, n)
                out.append(Rejected.of(bad, buf[i:stop]))
                start = stop
                i = nxt
        start = n if i < 0 else i
        # What is left is one incomplete frame (< flen bytes): the buffer is bounded
        # by construction, whatever the input.
        del buf[:start]
        return out

    def _check(self, payload: bytes, tail: bytes | bytearray) -> str | None:
        if tail != self._tail:
            return "bad_frame_end"
        try:
            raw = bytes.fromhex(payload.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return "bad_hex"
        if len(raw) != 6:  # fromhex skips whitespace; demand 12 real hex digits
            return "bad_hex"
        if raw[0] ^ raw[1] ^ raw[2] ^ raw[3] ^ raw[4] != raw[5]:
            return "bad_checksum"
        return None
