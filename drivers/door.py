"""Door (people) counters that send one text line per event, e.g. ``IN 1`` / ``OUT 1``.

Lines end with LF (a CR before it is ignored, CR alone also ends a line).  The
line regex must have named groups ``dir`` and ``count``; ``dir`` maps
case-insensitively: in/i/enter/entry/+ -> ``in``, out/o/exit/leave/- -> ``out``.
Contract: see :mod:`drivers.framing`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from drivers.config import DEFAULT_DOOR_REGEX
from drivers.framing import Rejected
from drivers.lines import DelimitedParser

__all__ = ["DoorFrame", "DoorParser"]

_DIRS: dict[str, Literal["in", "out"]] = {
    "in": "in", "i": "in", "enter": "in", "entry": "in", "+": "in",
    "out": "out", "o": "out", "exit": "out", "leave": "out", "-": "out",
}  # fmt: skip
MAX_LINE = 256
MAX_COUNT = 1_000_000


@dataclass(frozen=True, slots=True)
class DoorFrame:
    direction: Literal["in", "out"]
    count: int


class DoorParser:
    def __init__(self, line_regex: str = DEFAULT_DOOR_REGEX) -> None:
        self._re = re.compile(line_regex)
        # the line buffer the scanners use: any of CR, LF, CRLF ends a line
        self._lines = DelimitedParser(b"\n", max_line=MAX_LINE, any_eol=True)

    def feed(self, data: bytes) -> list[DoorFrame | Rejected]:
        return self._lines.feed_each(data, self._parse)

    def _parse(self, line: bytes) -> DoorFrame | Rejected | None:
        if not line.strip():
            return None
        if len(line) > MAX_LINE:
            return Rejected.of("oversize", line)
        m = self._re.search(line.decode("latin-1"))
        if m is None:
            return Rejected.of("no_match", line)
        direction = _DIRS.get(m.group("dir").strip().lower())
        try:
            count = int(m.group("count"))
        except ValueError:
            return Rejected.of("bad_count", line)
        if direction is None:
            return Rejected.of("bad_direction", line)
        if not 0 < count <= MAX_COUNT:
            return Rejected.of("bad_count", line)
        return DoorFrame(direction, count)
