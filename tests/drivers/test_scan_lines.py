"""A scan ends at CR, LF or CRLF whatever the configured suffix; two scans never merge
(issue 13: ``59012341234575901234123457``), at any chunking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.framing import Rejected
from drivers.scanner import ScanFrame, ScanParser

CODES = ["5901234123457", "]C10109506000134352\x1d21XYZ", "2302120012344"]


def feed_all(parser: ScanParser, chunks: list[bytes]) -> list[ScanFrame | Rejected]:
    return [frame for chunk in chunks for frame in parser.feed(chunk)]


@given(ends=st.lists(st.sampled_from([b"\r", b"\n", b"\r\n"]), min_size=3, max_size=3),
       suffix=st.sampled_from(["CR", "LF", "CRLF", "TAB"]), cut=st.integers(1, 7))
def test_any_end_of_line_ends_a_scan(ends: list[bytes], suffix: str, cut: int) -> None:
    stream = b"".join(code.encode("latin-1") + end for code, end in zip(CODES, ends,
                                                                         strict=True))
    chunks = [stream[i:i + cut] for i in range(0, len(stream), cut)]
    frames = feed_all(ScanParser(suffix), chunks)  # type: ignore[arg-type]
    assert [(f.symbology or "") + f.code for f in frames if isinstance(f, ScanFrame)] == CODES


def test_the_configured_suffix_still_ends_a_scan() -> None:
    frames = ScanParser("TAB").feed(b"5901234123457\t96385074\t")
    assert [f.code for f in frames if isinstance(f, ScanFrame)] == ["5901234123457", "96385074"]


def test_an_oversize_line_is_refused_and_the_next_scan_survives() -> None:
    parser = ScanParser("CR")
    frames = parser.feed(b"9" * 3000) + parser.feed(b"\n5901234123457\r")
    assert [f.reason if isinstance(f, Rejected) else f.code for f in frames] == [
        "oversize", "5901234123457"]
