"""Line/delimiter framing shared by scanners, door counters and the BLE simulator feed.

:class:`DelimitedParser` splits a byte stream on a terminator (``b"\\r"``,
``b"\\n"``, ``b"\\r\\n"``, ``b"\\t"``) or on ``STX ... ETX`` pairs, with a bounded
line length.  With ``any_eol=True`` CR, LF and CRLF end a line too, whatever the
terminator (a scanner set to CR that sends LF must not glue two scans together; the
empty line between the CR and LF of a CRLF is dropped).  An over-long line is reported
once as ``Rejected("oversize")`` and everything up to the next terminator is discarded,
so its tail never turns into a bogus frame.  ``redact=True`` keeps payload bytes out
of ``Rejected.hex`` (scanner input may be card data).  Contract: see :mod:`drivers.framing`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from drivers.framing import Rejected

__all__ = ["DelimitedParser"]

T = TypeVar("T")

STX = 0x02
ETX = 0x03


class DelimitedParser:
    def __init__(
        self,
        terminator: bytes = b"\r",
        *,
        stx_etx: bool = False,
        max_line: int = 512,
        redact: bool = False,
        any_eol: bool = False,
    ) -> None:
        if not terminator and not stx_etx:
            raise ValueError("need a terminator or STX/ETX framing")
        self.terminator = terminator
        self.stx_etx = stx_etx
        self.max_line = max_line
        self.redact = redact
        self._buf = bytearray()
        self._discarding = False
        self._split: re.Pattern[bytes] | None = None
        if any_eol:
            ends = {b"\r\n", b"\r", b"\n", terminator}
            self._split = re.compile(b"|".join(re.escape(e) for e in sorted(ends, key=len,
                                                                              reverse=True)))

    def _find(self, buf: bytearray, pos: int) -> tuple[int, int]:
        """Start and length of the next terminator at or after ``pos`` ((-1, 0) if none)."""
        if self._split is None:
            return buf.find(self.terminator, pos), len(self.terminator)
        match = self._split.search(buf, pos)
        if match is None:
            return -1, 0
        return match.start(), match.end() - match.start()

    def _rej(self, reason: str, data: bytes | bytearray) -> Rejected:
        return Rejected(reason) if self.redact else Rejected.of(reason, data)

    def feed(self, data: bytes) -> list[bytes | Rejected]:
        if self.stx_etx:
            return self._feed_stx(data)
        buf = self._buf
        buf += data
        out: list[bytes | Rejected] = []
        tlen = max(len(self.terminator), 2 if self._split is not None else 1)
        pos = 0
        while True:
            j, found = self._find(buf, pos)
            if j < 0:
                break
            line = bytes(buf[pos:j])
            pos = j + found
            if self._discarding:
                self._discarding = False
                continue
            if not line and self._split is not None:
                continue  # the LF of a CRLF split across reads, or a blank line
            if len(line) > self.max_line:
                out.append(self._rej("oversize", line))
                continue
            out.append(line)
        del buf[:pos]
        if len(buf) > self.max_line + tlen:
            if not self._discarding:
                out.append(self._rej("oversize", buf))
                self._discarding = True
            # keep a possible partial terminator at the end
            del buf[: len(buf) - (tlen - 1)]
        return out

    def feed_each(
        self, data: bytes, record: Callable[[bytes], T | Rejected | None]
    ) -> list[T | Rejected]:
        """:meth:`feed`, each line replaced by ``record(line)`` (None: dropped); a
        ``Rejected`` from the framing passes through as it is."""
        out: list[T | Rejected] = []
        for item in self.feed(data):
            if isinstance(item, Rejected):
                out.append(item)
                continue
            got = record(item)
            if got is not None:
                out.append(got)
        return out

    def _feed_stx(self, data: bytes) -> list[bytes | Rejected]:
        buf = self._buf
        buf += data
        out: list[bytes | Rejected] = []
        while True:
            i = buf.find(STX)
            if i < 0:
                if buf.strip(b"\r\n\t "):
                    out.append(self._rej("garbage", buf))
                buf.clear()
                break
            if i > 0:
                if buf[:i].strip(b"\r\n\t "):
                    out.append(self._rej("garbage", buf[:i]))
                del buf[:i]
            j = buf.find(ETX, 1)
            nxt = buf.find(STX, 1)
            if nxt >= 0 and (j < 0 or nxt < j):
                out.append(self._rej("unterminated", buf[:nxt]))
                del buf[:nxt]
                continue
            if j < 0:
                if len(buf) > self.max_line + 1:
                    out.append(self._rej("oversize", buf))
                    buf.clear()
                break
            line = bytes(buf[1:j])
            del buf[: j + 1]
            if len(line) > self.max_line:
                out.append(self._rej("oversize", line))
            else:
                out.append(line)
        return out
