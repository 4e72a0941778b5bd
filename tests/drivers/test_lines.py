"""``DelimitedParser.feed_each``: each line becomes a record, framing rejects pass through."""

from __future__ import annotations

from drivers.framing import Rejected
from drivers.lines import DelimitedParser


def _record(line: bytes) -> int | Rejected | None:
    if not line.strip():
        return None
    return int(line) if line.isdigit() else Rejected("not_a_number")


def test_records_rejects_and_skips_keep_wire_order() -> None:
    parser = DelimitedParser(b"\n", max_line=4)
    got = parser.feed_each(b"12\n  \nab\n123456789\n7", _record)
    assert got == [12, Rejected("not_a_number"), Rejected.of("oversize", b"123456789")]
    assert parser.feed_each(b"\n", _record) == [7]  # the tail waited for its terminator


def test_a_split_stream_gives_the_same_records() -> None:
    data = b"1\n22\nx\n333\n"
    whole = DelimitedParser(b"\n").feed_each(data, _record)
    parser = DelimitedParser(b"\n")
    pieces = [r for i in range(len(data)) for r in parser.feed_each(data[i : i + 1], _record)]
    assert pieces == whole == [1, 22, Rejected("not_a_number"), 333]
