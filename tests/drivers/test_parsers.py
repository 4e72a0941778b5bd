"""Sans-IO parsers: byte-at-a-time, any chunking, garbage, oversize, bad checksums, fuzz."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ble import (
    BeaconMatcher,
    SimFeedParser,
    encode_eddystone_uid,
    encode_ibeacon,
    parse_ad_structures,
)
from drivers.door import DoorFrame, DoorParser
from drivers.em4100 import Em4100Frame, Em4100Parser, encode_em4100
from drivers.framing import Rejected
from drivers.scanner import ScanFrame, ScanParser
from drivers.uhf import (
    TagNotice,
    UhfFrame,
    UhfParser,
    encode_frame,
    encode_tag_notice,
    multi_poll_command,
    parse_tag_notice,
    stop_command,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHUNK = settings(max_examples=60, deadline=None)

Parser = Any


def feed_chunks(parser: Parser, data: bytes, cuts: Sequence[int]) -> list[Any]:
    out: list[Any] = []
    prev = 0
    for c in sorted(set(cuts)):
        out += parser.feed(data[prev:c])
        prev = c
    out += parser.feed(data[prev:])
    return out


def frames(items: list[Any]) -> list[Any]:
    return [i for i in items if not isinstance(i, Rejected)]


def rejects(items: list[Any]) -> list[str]:
    return [i.reason for i in items if isinstance(i, Rejected)]


def byte_at_a_time(parser: Parser, data: bytes) -> list[Any]:
    out: list[Any] = []
    for b in data:
        out += parser.feed(bytes((b,)))
    return out


# -- EM4100 ------------------------------------------------------------------------

TAGS = ["0A1B2C3D4E", "FFFFFFFFFF", "0000000001", "12AB34CD56"]


@pytest.mark.parametrize("variant", ["rdm6300", "id12la"])
def test_em4100_frames_byte_at_a_time(variant: Any) -> None:
    stream = b"".join(encode_em4100(t, variant) for t in TAGS)
    got = byte_at_a_time(Em4100Parser(variant), stream)
    assert got == [Em4100Frame(t) for t in TAGS]


def test_em4100_known_vector_and_lowercase() -> None:
    # RDM6300 datasheet-style frame: id 62E3086CED, checksum 08 = 62^E3^08^6C^ED
    assert encode_em4100("62E3086CED") == b"\x0262E3086CED08\x03"
    assert Em4100Parser().feed(b"\x0262e3086ced08\x03") == [Em4100Frame("62E3086CED")]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x020A1B2C3D4EFF\x03", "bad_checksum"),
        (b"\x020A1B2C3D4G4E\x03", "bad_hex"),
        (b"\x020A1B 2C3D4E4\x03", "bad_hex"),
        (b"\x020A1B2C3D4E4E\x04", "bad_frame_end"),
    ],
)
def test_em4100_rejects_and_resyncs(raw: bytes, reason: str) -> None:
    good = encode_em4100("0A1B2C3D4E")
    out = Em4100Parser().feed(b"noise" + raw + good)
    assert frames(out) == [Em4100Frame("0A1B2C3D4E")]
    assert rejects(out) == ["garbage", reason]
    bad = next(i for i in out if isinstance(i, Rejected) and i.reason == reason)
    assert bad.hex.startswith(raw[:4].hex())


def test_em4100_id12la_needs_crlf() -> None:
    p = Em4100Parser("id12la")
    assert rejects(p.feed(encode_em4100("0A1B2C3D4E", "rdm6300") + b"\x00\x00")) == [
        "bad_frame_end"
    ]


def test_em4100_oversize_garbage_keeps_buffer_bounded() -> None:
    p = Em4100Parser()
    for _ in range(200):
        p.feed(bytes(range(3, 256)) * 20)
    p.feed(b"\x02" + b"A" * 5)
    assert p.pending < 16
    assert p.feed(b"A" * 100 + encode_em4100("0A1B2C3D4E"))[-1] == Em4100Frame("0A1B2C3D4E")


@CHUNK
@given(
    tags=st.lists(st.sampled_from(TAGS), min_size=1, max_size=6),
    noise=st.binary(max_size=20).filter(lambda b: 2 not in b),
    cuts=st.lists(st.integers(0, 200), max_size=12),
    variant=st.sampled_from(["rdm6300", "id12la"]),
)
def test_em4100_any_chunking_same_frames(
    tags: list[str], noise: bytes, cuts: list[int], variant: Any
) -> None:
    stream = noise + b"".join(encode_em4100(t, variant) + noise for t in tags)
    whole = frames(Em4100Parser(variant).feed(stream))
    assert whole == [Em4100Frame(t) for t in tags]
    assert frames(feed_chunks(Em4100Parser(variant), stream, cuts)) == whole


# -- UHF ----------------------------------------------------------------------------

EPCS = [bytes.fromhex("3074257BF7194E4000001A85"), bytes.fromhex("E28011606000020A1BBB7E02")]


def test_uhf_commands_match_documented_bytes() -> None:
    assert multi_poll_command(10000).hex() == "bb00270003222710837e"
    assert stop_command().hex() == "bb00280000287e"
    assert encode_frame(0, 0x22).hex() == "bb00220000227e"


def test_uhf_tag_notices_byte_at_a_time() -> None:
    stream = b"".join(encode_tag_notice(e, rssi=-55 - i) for i, e in enumerate(EPCS))
    got = byte_at_a_time(UhfParser(), stream)
    notices = [parse_tag_notice(f) for f in got]
    assert notices == [
        TagNotice(rssi=-55, pc=0x3000, epc=EPCS[0]),
        TagNotice(rssi=-56, pc=0x3000, epc=EPCS[1]),
    ]


def test_uhf_bad_checksum_end_type_length_resync() -> None:
    good = encode_tag_notice(EPCS[0])
    bad_cs = bytearray(good)
    bad_cs[-2] ^= 0xFF
    bad_end = bytearray(good)
    bad_end[-1] = 0x00
    out = UhfParser().feed(
        b"\x00\x01"
        + bytes(bad_cs)
        + bytes(bad_end)
        + b"\xbb\x07\x22"
        + b"\xbb\x01\x22\xff\xff"
        + good
    )
    assert frames(out) == [UhfFrame(2, 0x22, good[5:-2])]
    got = rejects(out)
    assert got[0] == "garbage"
    assert {"bad_checksum", "bad_frame_end", "bad_type", "bad_length"} <= set(got)


def test_uhf_error_frame_is_not_a_tag() -> None:
    (f,) = UhfParser().feed(encode_frame(1, 0xFF, b"\x15"))
    assert isinstance(f, UhfFrame)
    assert parse_tag_notice(f) is None


def test_uhf_oversize_garbage_bounded() -> None:
    p = UhfParser()
    for _ in range(100):
        p.feed(b"\xbb\x02\x22\x01\xff" + bytes(300))  # claims 511 params, never completes
    assert p.pending <= 520
    p.feed(bytes(range(0xBB)) * 50)
    assert p.feed(encode_tag_notice(EPCS[0]))[-1] == UhfFrame(
        2, 0x22, encode_tag_notice(EPCS[0])[5:-2]
    )


@CHUNK
@given(
    picks=st.lists(st.sampled_from(EPCS), min_size=1, max_size=6),
    rssi=st.integers(-127, 0),
    cuts=st.lists(st.integers(0, 200), max_size=12),
    noise=st.binary(max_size=8).filter(lambda b: 0xBB not in b),
)
def test_uhf_any_chunking_same_frames(
    picks: list[bytes], rssi: int, cuts: list[int], noise: bytes
) -> None:
    stream = noise + b"".join(encode_tag_notice(e, rssi) + noise for e in picks)
    whole = frames(UhfParser().feed(stream))
    assert [parse_tag_notice(f) for f in whole] == [
        TagNotice(rssi, (len(e) // 2) << 11, e) for e in picks
    ]
    assert frames(feed_chunks(UhfParser(), stream, cuts)) == whole


# -- scanner ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "term"), [("CR", b"\r"), ("LF", b"\n"), ("CRLF", b"\r\n"), ("TAB", b"\t")]
)
def test_scanner_suffixes_byte_at_a_time(suffix: Any, term: bytes) -> None:
    stream = (
        b"]E05901234123457" + term + b"hello-42" + term + b"]C1010950110153000317\x1d10AB" + term
    )
    got = byte_at_a_time(ScanParser(suffix), stream)
    assert got == [
        ScanFrame("5901234123457", "]E0"),
        ScanFrame("hello-42", None),
        ScanFrame("010950110153000317\x1d10AB", "]C1"),
    ]


def test_scanner_prefix_stx_etx_and_keep_aim() -> None:
    p = ScanParser("CR", prefix="@@", stx_etx=True, strip_aim=False)
    out = p.feed(b"junk\x02@@]d2010950\x1d21X\x03\r\n\x02nopfx\x03\x02@@abc")
    assert frames(out) == [ScanFrame("]d2010950\x1d21X", None)]
    assert rejects(out) == ["garbage", "missing_prefix"]
    assert frames(p.feed(b"\x03")) == [ScanFrame("abc")]


def test_scanner_oversize_line_dropped_tail_not_a_code() -> None:
    p = ScanParser("CR", max_code=20)
    out = byte_at_a_time(p, b"A" * 200 + b"\r" + b"OK1\r")
    assert frames(out) == [ScanFrame("OK1")]
    assert rejects(out) == ["oversize"]
    assert all(i.hex == "" for i in out if isinstance(i, Rejected))  # scanner never leaks bytes
    assert len(p._lines._buf) < 40


@CHUNK
@given(
    codes=st.lists(st.text(alphabet="0123456789ABCxyz-\x1d", min_size=1, max_size=30), max_size=6),
    cuts=st.lists(st.integers(0, 300), max_size=12),
    suffix=st.sampled_from(["CR", "LF", "CRLF", "TAB"]),
    stx=st.booleans(),
)
def test_scanner_any_chunking(codes: list[str], cuts: list[int], suffix: Any, stx: bool) -> None:
    term = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "TAB": b"\t"}[suffix]
    if stx:
        stream = b"".join(b"\x02" + c.encode() + b"\x03" for c in codes)
    else:
        stream = b"".join(c.encode() + term for c in codes)
    whole = ScanParser(suffix, stx_etx=stx).feed(stream)
    assert frames(whole) == [ScanFrame(c) for c in codes]
    assert frames(feed_chunks(ScanParser(suffix, stx_etx=stx), stream, cuts)) == frames(whole)


# -- door counter ------------------------------------------------------------------------


def test_door_default_and_custom_regex() -> None:
    p = DoorParser()
    out = byte_at_a_time(p, b"IN 1\r\nOUT 3\nout 2\rhello\nIN -1\n")
    assert frames(out) == [DoorFrame("in", 1), DoorFrame("out", 3), DoorFrame("out", 2)]
    assert rejects(out) == ["no_match", "no_match"]
    q = DoorParser(r"^C(?P<dir>[+-])(?P<count>\d+);$")
    assert frames(q.feed(b"C+4;\nC-1;\nC*1;\n")) == [DoorFrame("in", 4), DoorFrame("out", 1)]


def test_door_oversize() -> None:
    p = DoorParser()
    out = p.feed(b"X" * 5000) + p.feed(b"more\nIN 2\n")
    assert frames(out) == [DoorFrame("in", 2)]
    assert rejects(out) == ["oversize"]


# -- BLE ---------------------------------------------------------------------------------

U = uuid.UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e")
NS = bytes.fromhex("edd1ebeac04e5defa017")
INST = bytes.fromhex("0123456789ab")


def test_ibeacon_and_eddystone_parse_and_filter() -> None:
    m = BeaconMatcher([U], [NS.hex()], rssi_threshold=-80)
    split = parse_ad_structures(encode_ibeacon(U, 258, 772, -59))
    assert split is not None
    s = m.match(*split, rssi=-70)
    assert s is not None
    assert (s.beacon_id, s.tx_power) == (f"{U}:258:772", -59)
    assert m.match(*split, rssi=-81) is None  # below threshold
    other = parse_ad_structures(encode_ibeacon(uuid.uuid4(), 1, 1))
    assert other is not None
    assert m.match(*other, rssi=-50) is None  # not configured
    ed = parse_ad_structures(encode_eddystone_uid(NS, INST, -20))
    assert ed is not None
    e = m.match(*ed, rssi=-50)
    assert e is not None
    assert (e.beacon_id, e.tx_power) == (f"{NS.hex()}:{INST.hex()}", -20)


def test_ble_sim_feed_parser() -> None:
    p = SimFeedParser()
    line = f"-61 {encode_ibeacon(U, 1, 2).hex()}\n".encode()
    out = byte_at_a_time(p, line + b"-61 zz\n" + b"-60 05ff4c\n" + line)
    assert [type(i).__name__ for i in out] == ["AdRecord", "Rejected", "Rejected", "AdRecord"]
    assert rejects(out) == ["bad_record", "bad_ad_structure"]


# -- fuzz: only declared outcomes, bounded buffers ------------------------------------------

PARSERS: list[tuple[str, Callable[[], Parser]]] = [
    ("em4100", Em4100Parser),
    ("id12la", lambda: Em4100Parser("id12la")),
    ("uhf", UhfParser),
    ("scanner", ScanParser),
    ("scanner_stx", lambda: ScanParser(stx_etx=True)),
    ("door", DoorParser),
    ("ble", SimFeedParser),
]
ALPHABET = st.sampled_from(b"\x02\x03\x0d\x0a\xbb\x7e\x00\x22\x1d0123456789ABCDEFIN OUT-")


@pytest.mark.parametrize(("name", "factory"), PARSERS, ids=[n for n, _ in PARSERS])
@FUZZ
@given(
    chunks=st.lists(
        st.one_of(st.binary(max_size=64), st.lists(ALPHABET, max_size=64).map(bytes)),
        max_size=20,
    )
)
def test_fuzz_parsers_never_raise(
    name: str, factory: Callable[[], Parser], chunks: list[bytes]
) -> None:
    p = factory()
    for c in chunks:
        for item in p.feed(c):
            assert not isinstance(item, Exception)
            if isinstance(item, Rejected):
                assert len(item.hex) <= 128
    held = getattr(p, "pending", None)
    if held is None:
        held = len(getattr(p, "_buf", None) or getattr(getattr(p, "_lines", None), "_buf", b""))
    assert held <= 4096


@CHUNK
@given(
    lines=st.lists(
        st.sampled_from([b"IN 1\r\n", b"OUT 2\n", b"junk\n", b"in 3\r", b"\n"]), max_size=8
    ),
    cuts=st.lists(st.integers(0, 80), max_size=10),
)
def test_door_any_chunking(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(lines)
    whole = DoorParser().feed(stream)
    assert feed_chunks(DoorParser(), stream, cuts) == whole


@CHUNK
@given(
    majors=st.lists(st.integers(0, 65535), max_size=5),
    cuts=st.lists(st.integers(0, 400), max_size=10),
)
def test_ble_feed_any_chunking(majors: list[int], cuts: list[int]) -> None:
    stream = b"".join(f"-60 {encode_ibeacon(U, m, 1).hex()}\n".encode() for m in majors)
    whole = SimFeedParser().feed(stream)
    assert len(frames(whole)) == len(majors)
    assert feed_chunks(SimFeedParser(), stream, cuts) == whole
