"""The shared receive buffer on its own, with a toy format: ``AA len_hi len_lo payload* xor``."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.framebuffer import FrameBuffer, FrameSpec
from drivers.framing import Rejected

MAX = 8


def _decode(raw: bytes) -> bytes | str:
    x = 0
    for c in raw[3:-1]:
        x ^= c
    return raw[3:-1] if x == raw[-1] else "bad_checksum"


def frame(payload: bytes) -> bytes:
    x = 0
    for c in payload:
        x ^= c
    return bytes((0xAA, 0, len(payload))) + payload + bytes((x,))


def _spec(decode: Callable[[bytes], bytes | str], cache_max: int = 4) -> FrameSpec[bytes]:
    return FrameSpec(start=0xAA, size=4, length_at=1, max_extra=MAX, decode=decode,
                     cache_max=cache_max)


def buffer(cache_max: int = 4) -> FrameBuffer[bytes]:
    return FrameBuffer(_spec(_decode, cache_max))


def frames(items: list[bytes | Rejected]) -> list[bytes]:
    return [i for i in items if not isinstance(i, Rejected)]


def reasons(items: list[bytes | Rejected]) -> list[str]:
    return [i.reason for i in items if isinstance(i, Rejected)]


def test_byte_at_a_time_gives_the_same_frames_as_one_chunk() -> None:
    stream = frame(b"ab") + frame(b"") + frame(b"xyz") * 3
    fb = buffer()
    got: list[bytes | Rejected] = []
    for k in range(len(stream)):
        got += fb.feed(stream[k : k + 1])
        assert fb.pending < MAX + 4
    assert got == [b"ab", b"", b"xyz", b"xyz", b"xyz"]
    assert buffer().feed(stream) == got
    assert fb.pending == 0


def test_garbage_before_between_and_after_frames_is_reported_once() -> None:
    fb = buffer()
    got = fb.feed(b"zz" + frame(b"a") + b"q" + frame(b"b") + b"tail")
    assert frames(got) == [b"a", b"b"]
    assert reasons(got) == ["garbage", "garbage", "garbage"]
    assert got[0] == Rejected.of("garbage", b"zz")
    assert got[-1] == Rejected.of("garbage", b"tail")
    assert fb.feed(b"no start here") == [Rejected.of("garbage", b"no start here")]
    assert fb.pending == 0


def test_a_bad_frame_resyncs_on_the_next_start_byte() -> None:
    bad = bytearray(frame(b"abc"))
    bad[-1] ^= 0xFF
    got = buffer().feed(bytes(bad) + frame(b"ok"))
    assert reasons(got) == ["bad_checksum"]
    assert frames(got) == [b"ok"]


def test_a_header_past_the_maximum_is_refused_before_its_body_arrives() -> None:
    fb = buffer()
    got = fb.feed(bytes((0xAA, 0, MAX + 1)))
    assert reasons(got) == ["bad_length"]
    assert fb.pending == 0


def test_the_buffer_stays_bounded_whatever_arrives() -> None:
    fb = buffer()
    for _ in range(1000):
        fb.feed(bytes((0xAA, 0, MAX)) + b"\x00" * 5)  # never finishes a frame...
        assert fb.pending <= MAX + 4  # ...yet nothing piles up


def test_the_cache_is_bounded_and_repeat_frames_decode_once() -> None:
    calls = 0

    def counting(raw: bytes) -> bytes | str:
        nonlocal calls
        calls += 1
        return _decode(raw)

    fb = FrameBuffer(_spec(counting, cache_max=2))
    for _ in range(50):
        assert fb.feed(frame(b"same")) == [b"same"]
    assert calls == 1
    for k in range(10):
        fb.feed(frame(bytes((k,))))
    assert len(fb._cache) <= 2


def test_fixed_size_frames_need_no_measure() -> None:
    fb = FrameBuffer(FrameSpec(start=0x02, size=3, decode=lambda raw: raw))
    assert fb.feed(b"\x02ab\x02c") == [b"\x02ab"]
    assert fb.pending == 2
    assert fb.feed(b"d") == [b"\x02cd"]


@settings(max_examples=200, deadline=None)
@given(payloads=st.lists(st.binary(max_size=MAX), max_size=6),
       cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8))
def test_any_split_yields_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(p) for p in payloads)
    fb = buffer()
    got: list[bytes | Rejected] = []
    last = 0
    for c in sorted(set(cuts)):
        got += fb.feed(stream[last:c])
        last = max(last, c)
    got += fb.feed(stream[last:])
    assert frames(got) == payloads
