"""One receive buffer for every parser of start-byte framed binary frames.

The byte-level loop that the EM4100 and UHF parsers share lives here, once: keep the
unfinished tail of the stream, report bytes before a frame start as ``garbage``, cut
whole frames, resynchronise on the next start byte after a bad one, and remember recent
valid frames (readers repeat the same card many times a second, so the hot path is one
dict lookup). A parser supplies only what is its own: the start byte, how long a frame
is, and how to check and decode one (:class:`FrameSpec`).

Bound: what stays buffered always starts at a start byte and is shorter than the
longest frame the spec accepts (a longer declared length is refused at once), so memory is bounded
by construction whatever the input.  See :mod:`drivers.framing` for the parser contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from drivers.framing import Rejected

__all__ = ["FrameBuffer", "FrameSpec"]

F = TypeVar("F")


@dataclass(frozen=True, slots=True)
class FrameSpec(Generic[F]):
    """What a frame format owns.

    * ``start``: the byte every frame begins with.
    * ``decode(raw)``: the frame from one whole frame's bytes, or a reject reason.
    * ``size``: the frame length, or with ``length_at`` the length of a frame whose
      length field says 0.
    * ``length_at``: offset of a 2-byte big-endian field counting the bytes beyond
      ``size``; a value past ``max_extra`` is refused as ``bad_length`` before the body
      arrives, which is what bounds the buffer.
    * ``early(buf, i)``: a reject reason already visible in the header of an incomplete
      frame (checked before ``bad_length``, only while the frame is incomplete).
    * ``cache_max``: how many distinct valid frames to remember (cleared when full).

    Declarative lengths rather than a callback: the loop runs once per frame, and a
    Python call there costs a third of the UHF parser's time.
    """

    start: int
    decode: Callable[[bytes], F | str]
    size: int
    length_at: int | None = None
    max_extra: int = 0
    early: Callable[[bytes, int], str | None] | None = None
    cache_max: int = 1024


class FrameBuffer(Generic[F]):
    """Sans-IO: ``feed(bytes)`` returns the frames and rejects found so far, in order."""

    __slots__ = ("_cache", "_pending", "spec")

    def __init__(self, spec: FrameSpec[F]) -> None:
        if spec.size <= 0:
            raise ValueError("a FrameSpec needs a positive size")
        self.spec = spec
        self._pending = b""
        self._cache: dict[bytes, F] = {}

    @property
    def pending(self) -> int:
        """How many bytes wait for the rest of their frame."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[F | Rejected]:
        spec = self.spec
        # Work on one immutable bytes object: slicing it is a single allocation.
        b = self._pending + bytes(data) if self._pending else bytes(data)
        out: list[F | Rejected] = []
        append = out.append
        find = b.find
        start = spec.start
        size = spec.size
        length_at = spec.length_at
        max_extra = spec.max_extra
        early = spec.early
        cache = self._cache
        n = len(b)
        i = find(start)
        if i < 0:
            if n:
                append(Rejected.of("garbage", b))
            self._pending = b""
            return out
        if i > 0:
            append(Rejected.of("garbage", b[:i]))
        while i >= 0:
            if length_at is None:
                end = i + size
            elif n - i < length_at + 2:
                break  # header incomplete
            else:
                extra = (b[i + length_at] << 8) | b[i + length_at + 1]
                end = i + size + extra
                if extra > max_extra or end > n:
                    reason = early(b, i) if early is not None else None
                    if reason is None and extra > max_extra:
                        reason = "bad_length"
                    if reason is not None:
                        i = self._resync(b, out, reason, i)
                        continue
            if end > n:
                break  # frame incomplete
            raw = b[i:end]
            frame = cache.get(raw)
            if frame is None:
                decoded = spec.decode(raw)
                if isinstance(decoded, str):
                    i = self._resync(b, out, decoded, i)
                    continue
                frame = decoded
                if len(cache) >= spec.cache_max:
                    cache.clear()
                cache[raw] = frame
            append(frame)
            i = find(start, end)
            if i > end:
                append(Rejected.of("garbage", b[end:i]))
            elif i < 0 and end < n:
                append(Rejected.of("garbage", b[end:]))
        self._pending = b[i:] if i >= 0 else b""
        return out

    def _resync(self, b: bytes, out: list[F | Rejected], reason: str, i: int) -> int:
        """Reject from ``i`` up to the next start byte (or the end) and go on from there."""
        nxt = b.find(self.spec.start, i + 1)
        out.append(Rejected.of(reason, b[i : nxt if nxt >= 0 else len(b)]))
        return nxt
