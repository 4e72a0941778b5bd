"""UHF RFID readers of the ``BB Type Cmd PL_H PL_L Params CS 7E`` frame family.

* ``CS`` is the low byte of the sum of every byte from ``Type`` to the last param.
* ``Type``: ``00`` command, ``01`` response, ``02`` notice.
* Commands: ``22`` single inventory, ``27`` multi-poll (params ``22 CNT_H CNT_L``),
  ``28`` stop multi-poll, ``FF`` error response (param = error code; ``15`` = no tag).
* A tag notice (type ``02``, cmd ``22``) carries ``RSSI(1, signed dBm) PC(2) EPC(n) CRC(2)``.

:class:`UhfParser` follows the contract in :mod:`drivers.framing`.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.framing import Rejected

__all__ = [
    "CMD_ERROR",
    "CMD_INVENTORY",
    "CMD_MULTI_POLL",
    "CMD_STOP",
    "TagNotice",
    "UhfFrame",
    "UhfParser",
    "encode_frame",
    "encode_tag_notice",
    "multi_poll_command",
    "parse_tag_notice",
    "stop_command",
]

HEAD = 0xBB
END = 0x7E
TYPE_COMMAND = 0x00
TYPE_RESPONSE = 0x01
TYPE_NOTICE = 0x02
CMD_INVENTORY = 0x22
CMD_MULTI_POLL = 0x27
CMD_STOP = 0x28
CMD_ERROR = 0xFF
ERR_NO_TAG = 0x15
MAX_PARAMS = 512
_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class UhfFrame:
    type: int
    cmd: int
    params: bytes


@dataclass(frozen=True, slots=True)
class TagNotice:
    rssi: int
    pc: int
    epc: bytes

    @property
    def epc_hex(self) -> str:
        return self.epc.hex().upper()


def encode_frame(ftype: int, cmd: int, params: bytes = b"") -> bytes:
    body = bytes((ftype, cmd, len(params) >> 8, len(params) & 0xFF)) + params
    return bytes((HEAD,)) + body + bytes((sum(body) & 0xFF, END))


def multi_poll_command(count: int) -> bytes:
    return encode_frame(TYPE_COMMAND, CMD_MULTI_POLL, bytes((0x22, count >> 8, count & 0xFF)))


def stop_command() -> bytes:
    return encode_frame(TYPE_COMMAND, CMD_STOP)


def encode_tag_notice(epc: bytes, rssi: int = -60, crc: int = 0) -> bytes:
    pc = (len(epc) // 2) << 11
    params = bytes((rssi & 0xFF,)) + pc.to_bytes(2, "big") + epc + crc.to_bytes(2, "big")
    return encode_frame(TYPE_NOTICE, CMD_INVENTORY, params)


def parse_tag_notice(frame: UhfFrame) -> TagNotice | None:
    """The tag in an inventory notice/response, or None if ``frame`` is not one."""
    if frame.cmd != CMD_INVENTORY or frame.type == TYPE_COMMAND:
        return None
    p = frame.params
    if len(p) < 5 + 2:  # rssi, pc, at least one EPC word, crc
        return None
    rssi = p[0] - 256 if p[0] >= 128 else p[0]
    return TagNotice(rssi=rssi, pc=(p[1] << 8) | p[2], epc=bytes(p[3:-2]))


class UhfParser:
    """Sans-IO parser for the 0xBB ... 0x7E family (see :mod:`drivers.framing`)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        # Whole valid frames seen recently -> parsed frame (repeat reads are common).
        self._cache: dict[bytes, UhfFrame] = {}

    def feed(self, data: bytes) -> list[UhfFrame | Rejected]:
        buf = self._buf
        buf += data
        out: list[UhfFrame | Rejected] = []
        cache = self._cache
        n = len(buf)
        i = buf.find(HEAD)
        if i < 0:
            if n:
                out.append(Rejected.of("garbage", buf))
            buf.clear()
            return out
        if i > 0:
            out.append(Rejected.of("garbage", buf[:i]))
        while i >= 0 and i + 5 <= n:
            plen = (buf[i + 3] << 8) | buf[i + 4]
            if buf[i + 1] > TYPE_NOTICE or plen > MAX_PARAMS:
                reason = "bad_type" if buf[i + 1] > TYPE_NOTICE else "bad_length"
                i = self._resync(out, reason, i, n)
                continue
            end = i + 7 + plen
            if end > n:
                break  # incomplete
            raw = bytes(buf[i:end])
            frame = cache.get(raw)
            if frame is None:
                if raw[-1] != END:
                    i = self._resync(out, "bad_frame_end", i, n)
                    continue
                if sum(raw[1:-2]) & 0xFF != raw[-2]:
                    i = self._resync(out, "bad_checksum", i, n)
                    continue
                frame = UhfFrame(raw[1], raw[2], raw[5:-2])
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[raw] = frame
            out.append(frame)
            i = buf.find(HEAD, end)
            if i > end:
                out.append(Rejected.of("garbage", buf[end:i]))
            elif i < 0 and end < n:
                out.append(Rejected.of("garbage", buf[end:]))
        # What is left starts at a frame head and is shorter than the largest
        # frame (MAX_PARAMS + 7): the buffer is bounded by construction.
        if i < 0:
            buf.clear()
        else:
            del buf[:i]
        return out

    def _resync(self, out: list[UhfFrame | Rejected], reason: str, i: int, n: int) -> int:
        buf = self._buf
        nxt = buf.find(HEAD, i + 1)
        out.append(Rejected.of(reason, buf[i : nxt if nxt >= 0 else n]))
        return nxt
