"""UHF RFID readers of the ``BB Type Cmd PL_H PL_L Params CS 7E`` frame family.

* ``CS`` is the low byte of the sum of every byte from ``Type`` to the last param.
* ``Type``: ``00`` command, ``01`` response, ``02`` notice.
* Commands: ``22`` single inventory, ``27`` multi-poll (params ``22 CNT_H CNT_L``),
  ``28`` stop multi-poll, ``FF`` error response (param = error code; ``15`` = no tag).
* A tag notice (type ``02``, cmd ``22``) carries ``RSSI(1, signed dBm) PC(2) EPC(n) CRC(2)``.

:class:`UhfParser` follows the contract in :mod:`drivers.framing`; its byte loop is
:class:`drivers.framebuffer.FrameBuffer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.framebuffer import FrameBuffer, FrameSpec
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
class TagNotice:
    rssi: int
    pc: int
    epc: bytes
    epc_hex: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "epc_hex", self.epc.hex().upper())


@dataclass(frozen=True, slots=True)
class UhfFrame:
    type: int
    cmd: int
    params: bytes
    notice: TagNotice | None = field(default=None, compare=False, repr=False)
    """The decoded tag for inventory notices (filled by the parser, computed once)."""


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
    if frame.notice is not None:
        return frame.notice
    return _tag_notice(frame.type, frame.cmd, frame.params)


def _tag_notice(ftype: int, cmd: int, p: bytes) -> TagNotice | None:
    if cmd != CMD_INVENTORY or ftype == TYPE_COMMAND:
        return None
    if len(p) < 5 + 2:  # rssi, pc, at least one EPC word, crc
        return None
    rssi = p[0] - 256 if p[0] >= 128 else p[0]
    return TagNotice(rssi=rssi, pc=(p[1] << 8) | p[2], epc=bytes(p[3:-2]))


class UhfParser:
    """Sans-IO parser for the 0xBB ... 0x7E family (see :mod:`drivers.framing`)."""

    def __init__(self) -> None:
        self._buffer = FrameBuffer(FrameSpec(
            start=HEAD, size=7, length_at=3, max_extra=MAX_PARAMS, early=_early,
            decode=_decode, cache_max=_CACHE_MAX))

    def feed(self, data: bytes) -> list[UhfFrame | Rejected]:
        return self._buffer.feed(data)

    @property
    def pending(self) -> int:
        """Bytes held for an unfinished frame (bounded by the longest valid frame)."""
        return self._buffer.pending


def _early(b: bytes, i: int) -> str | None:
    return "bad_type" if b[i + 1] > TYPE_NOTICE else None


def _decode(raw: bytes) -> UhfFrame | str:
    if raw[1] > TYPE_NOTICE:
        return "bad_type"
    if raw[-1] != END:
        return "bad_frame_end"
    if sum(raw[1:-2]) & 0xFF != raw[-2]:
        return "bad_checksum"
    ftype, cmd, params = raw[1], raw[2], raw[5:-2]
    return UhfFrame(ftype, cmd, params, _tag_notice(ftype, cmd, params))
