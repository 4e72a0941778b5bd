"""Bounded hypothesis fuzzing of every wire parser and every inbound payload receiver.

Raw bytes, and near-valid structured payloads (real frames and real batches with fields
mutated), go to the targets in :mod:`tests.fuzz.targets`; nothing but a declared error may
escape. Then megabytes of endless garbage go to every stateful parser under tracemalloc:
the peak must stay bounded. Longer runs: tests/fuzz/README (atheris).
"""

from __future__ import annotations

import os
import random
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ble import SimFeedParser, encode_eddystone_uid, encode_ibeacon
from drivers.door import DoorParser
from drivers.em4100 import Em4100Parser, encode_em4100
from drivers.scanner import ScanParser
from drivers.uhf import UhfParser, encode_frame, encode_tag_notice
from tests.fuzz import targets

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "80")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- raw bytes to every target ------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_raw_bytes_never_raise_undeclared_errors(name: str) -> None:
    target = targets.TARGETS[name]

    @FUZZ
    @given(st.binary(max_size=2048))
    def run(data: bytes) -> None:
        target(data)

    run()


# -- near-valid wire frames ---------------------------------------------------------------
def _valid_frames(rng: random.Random) -> bytes:
    import uuid  # noqa: PLC0415

    parts = [
        b"5901234123457\r", b"]E05901234123457\r\n", b"\x02ABC-1\x03",
        encode_em4100(f"{rng.randrange(1 << 40):010X}"),
        encode_em4100(f"{rng.randrange(1 << 40):010X}", "id12la"),
        encode_tag_notice(bytes(rng.randrange(256) for _ in range(12))),
        encode_frame(0x01, 0x22, bytes(rng.randrange(256) for _ in range(rng.randrange(8)))),
        b"-60 " + encode_ibeacon(uuid.UUID(int=rng.getrandbits(128)), 1, 2).hex().encode()
        + b"\n",
        b"-70 " + encode_eddystone_uid(bytes(10), bytes(6)).hex().encode() + b"\n",
        b"IN 3\n", b"out\r", b"+ 1000001\n",
    ]
    return b"".join(rng.choice(parts) for _ in range(rng.randrange(1, 12)))


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    rng = random.Random(draw(st.integers(0, 2**32)))
    data = bytearray(_valid_frames(rng))
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, len(data) - 1))
        if op == 0:
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            del data[pos]
        elif op == 2:
            data[pos:pos] = draw(st.binary(max_size=8))
        else:
            data[pos:pos] = data[: draw(st.integers(0, 40))]
    return bytes(data)


@pytest.mark.parametrize("name", ["scanner", "em4100", "uhf", "ble", "door"])
def test_mutated_frames_never_raise(name: str) -> None:
    target = targets.TARGETS[name]

    @FUZZ
    @given(mutated_frames())
    def run(data: bytes) -> None:
        target(data)

    run()


# -- near-valid JSON payloads ---------------------------------------------------------------
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60),
                      st.text(max_size=12), st.floats(allow_nan=False, allow_infinity=False))
json_any = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20)

delta = st.fixed_dictionaries({"sku": st.one_of(st.sampled_from(["A-1", "B-2"]), json_any),
                               "delta": st.one_of(st.integers(-5, 5), json_any)})


def _command(cseq: Any, draw: st.DrawFn) -> dict[str, Any]:
    return {
        "cseq": cseq, "id": draw(st.one_of(st.uuids().map(str), json_any)),
        "type": draw(st.sampled_from(["stock.adjust", "catalog.upsert", "catalog.remove",
                                      "reservation.create", "reservation.cancel",
                                      "count.request", "resync", "future.thing"])),
        "ts": "2026-11-25T09:15:02.123Z",
        "data": draw(st.one_of(st.just({"reason": "replenishment"}), json_any)),
        "stock": draw(st.one_of(st.lists(delta, max_size=3), json_any)),
        "reserve": draw(st.one_of(st.just([]), st.lists(delta, max_size=2), json_any)),
    }


@st.composite
def command_payloads(draw: st.DrawFn) -> bytes:
    start = draw(st.integers(-1, 4))
    n = draw(st.integers(0, 4))
    commands = [_command(start + i, draw) for i in range(n)]
    obj: dict[str, Any] = {"v": draw(st.sampled_from([1, 1, 1, 2, "1"])),
                           "store": draw(st.sampled_from(["S001", "S001", "S002", 1])),
                           "commands": commands}
    if draw(st.booleans()):
        obj[draw(st.text(max_size=5))] = draw(json_any)
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)


@st.composite
def store_side_payloads(draw: st.DrawFn) -> bytes:
    """What a store publishes, mutated: event batches, births, digests, command acks."""
    kind = draw(st.sampled_from(["events", "status", "digest", "commands/ack", "health"]))
    epoch = draw(st.sampled_from(["e1", "e2", ""]))
    if kind == "events":
        start = draw(st.integers(-1, 5))
        events = [{"seq": start + i, "id": f"id{i}", "type": draw(st.sampled_from(
            ["sale", "receipt", "count", "fulfilment", "reservation.released", "x",
             "order.accepted", "order.rejected", "order.ready"])),
            "ts": "2026-11-25T09:15:02.123Z", "data": draw(json_any),
            "stock": draw(st.one_of(st.lists(delta, max_size=2), json_any)),
            "reserve": draw(st.one_of(st.just([]), json_any))}
            for i in range(draw(st.integers(0, 4)))]
        obj: dict[str, Any] = {"v": 1, "store": "S001", "epoch": epoch, "events": events}
    elif kind == "status":
        obj = {"v": 1, "store": "S001", "state": draw(st.sampled_from(["online", "offline",
                                                                       "x"])),
               "epoch": epoch, "boot_id": "b", "last_seq": draw(st.one_of(
                   st.integers(-1, 9), json_any)), "applied_cseq": draw(json_any),
               "agent": "a", "ts": "2026-11-25T09:15:02.123Z"}
    elif kind == "digest":
        obj = {"v": 1, "store": "S001", "epoch": epoch, "through_seq": draw(
            st.integers(-1, 9)), "through_cseq": draw(st.integers(-1, 9)),
               "skus": draw(st.integers(-1, 9)), "sha256": draw(st.text(max_size=64))}
    elif kind == "commands/ack":
        obj = {"v": 1, "store": "S001", "epoch": epoch,
               "through_cseq": draw(st.one_of(st.integers(-1, 9), json_any)),
               "ts": draw(st.one_of(st.just("2026-11-25T09:15:02.123Z"), json_any))}
    else:
        obj = {"v": 1, "store": "S001", "ts": "x", "devices": draw(json_any)}
    if draw(st.booleans()):
        obj[draw(st.sampled_from(["v", "store", "epoch", "extra"]))] = draw(json_any)
    suffix = targets._CentralHarness.SUFFIXES.index(kind)
    return bytes([suffix]) + orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS) + b"\x01"


def test_command_batches_store_side() -> None:
    @FUZZ
    @given(command_payloads())
    def run(payload: bytes) -> None:
        targets.store_commands(payload)
        targets.store_inbox(payload)

    run()


def test_store_payloads_at_central() -> None:
    @FUZZ
    @given(store_side_payloads())
    def run(payload: bytes) -> None:
        targets.central(payload)

    run()


@st.composite
def ack_payloads(draw: st.DrawFn) -> bytes:
    obj = {"v": draw(st.sampled_from([1, 1, 2])), "store": draw(st.sampled_from(
        ["S001", "S001", "S002"])), "epoch": draw(st.one_of(st.just("e"), json_any)),
           "through_seq": draw(st.one_of(st.integers(-2, 2**54), json_any)),
           "ts": draw(st.one_of(st.just("2026-11-25T09:15:02.123Z"), json_any))}
    return bytes([draw(st.integers(0, 1))]) + orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)


def test_event_acks_store_side() -> None:
    @FUZZ
    @given(ack_payloads())
    def run(payload: bytes) -> None:
        targets.store_ack(payload)

    run()


# -- memory stays bounded on endless garbage ---------------------------------------------------
GARBAGE_BYTES = 1024 * 1024
SMALL_GARBAGE_BYTES = 256 * 1024
"""For the streams that make a parser emit one ``Rejected`` per input byte (slow under
tracemalloc, not a leak: a 9600-baud line carries about 1 KB/s)."""
PER_BYTE_REJECTS = {"stx_only", "uhf_heads_huge_length"}
PEAK_LIMIT = 3 * 1024 * 1024
"""Absolute ceiling; the real check is that the peak stops growing with the input."""


def _garbage_streams(rng: random.Random) -> dict[str, Callable[[int], bytes]]:
    em = [encode_em4100(f"{rng.randrange(1 << 40):010X}") for _ in range(8192)]
    uhf = [encode_tag_notice(rng.randbytes(12)) for _ in range(8192)]
    counter = iter(range(1 << 62))
    return {
        "random": rng.randbytes,
        "no_terminator": lambda n: b"7" * n,
        "stx_only": lambda n: b"\x02" * n,
        "uhf_heads_huge_length": lambda n: (b"\xbb\x02\x22\xff\xff" * (n // 5 + 1))[:n],
        "distinct_valid_em4100": lambda n: b"".join(
            em[next(counter) % len(em)] for _ in range(n // 14)),
        "distinct_valid_uhf": lambda n: b"".join(
            uhf[next(counter) % len(uhf)] for _ in range(n // 24)),
    }


PARSERS: dict[str, Callable[[], Any]] = {
    "scanner": lambda: ScanParser("CR"),
    "scanner_stx": lambda: ScanParser("CR", stx_etx=True),
    "em4100": Em4100Parser,
    "uhf": UhfParser,
    "door": DoorParser,
    "ble_feed": SimFeedParser,
}


@pytest.mark.parametrize("parser_name", sorted(PARSERS))
def test_memory_stays_bounded_on_endless_garbage(parser_name: str) -> None:
    """Peak traced memory after a third of the garbage and after all of it: bounded, and
    not growing with the amount fed (a leak would keep growing)."""
    rng = random.Random(parser_name)
    for stream_name, make in _garbage_streams(rng).items():
        parser = PARSERS[parser_name]()
        chunk = 8192
        peaks: list[int] = []
        total = SMALL_GARBAGE_BYTES if stream_name in PER_BYTE_REJECTS else GARBAGE_BYTES
        tracemalloc.start()
        try:
            fed = 0
            for goal in (total // 3, total):
                while fed < goal:
                    piece = make(chunk)
                    parser.feed(piece)  # results dropped, as a reader does after routing
                    fed += len(piece) or chunk
                peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        first, last = peaks
        assert last < PEAK_LIMIT, (parser_name, stream_name, peaks)
        assert last < first * 1.25 + 256 * 1024, (parser_name, stream_name, peaks)
