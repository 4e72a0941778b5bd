"""Event batches on the central's hot path: typed decoding and the stored run format.

Pure functions, no I/O. Two jobs:

- :func:`decode_fast` decodes a well-formed event batch (PROTOCOL §4.2) with msgspec into
  just what central needs — each event's ``seq``, ``type`` and ``stock``/``reserve`` lists,
  and the event's exact bytes as received — without building a Python object for every
  value of ``data``. It accepts only batches whose every part passes the §4.3 checks; for
  anything else it returns None and the caller takes the general path (orjson, precise
  drop reasons, per-event quarantine), which stays the single source of truth for odd input.
- A *run* is how central stores applied events: the events of one batch that were applied,
  contiguous in seq, as one row holding their bytes as received (a JSON array) and their
  SHA-256 digests side by side (32 bytes each). One row per batch instead of one per event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final

import msgspec
import orjson

from sync.errors import WireFormatError
from sync.wire import MAX_BATCH_ITEMS, MAX_SAFE_INT, SKU_RE, canonical_json, check_deltas

HASH_BYTES: Final = 32

_SafeInt = Annotated[int, msgspec.Meta(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]


class _Delta(msgspec.Struct, gc=False):
    sku: str
    delta: _SafeInt


class _Data(msgspec.Struct, gc=False):
    """Of an event's ``data``, only ``customer`` (customer history); the rest is skipped."""

    customer: str | None = None


class _Head(msgspec.Struct, gc=False):
    """What central reads of an event; ``id`` and ``ts`` are skipped, ``data`` is skipped
    but for its ``customer``.
    Tuples, not lists: no per-event allocation for an absent list, and none of these
    objects is tracked by the cyclic garbage collector (lists made it run every few
    batches, walking every live object)."""

    seq: int
    type: str = ""
    stock: tuple[_Delta, ...] = ()
    reserve: tuple[_Delta, ...] = ()
    data: _Data | None = None


class _Envelope(msgspec.Struct, gc=False):
    v: int
    store: str
    epoch: str
    events: list[msgspec.Raw]


class _Heads(msgspec.Struct, gc=False):
    events: list[_Head]


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_HEADS = msgspec.json.Decoder(_Heads)
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_HEAD = msgspec.json.Decoder(_Head)
_ENCODER = msgspec.json.Encoder()

CLOSING_TYPES: Final = frozenset({"fulfilment", "reservation.released", "count",
                                 "order.rejected"})
"""Event types that close a reservation or a count request (§5.3): their ``data`` is read."""

# SKUs already found valid; the same few thousand recur on a busy central. Bounded.
_KNOWN_SKUS: set[str] = set()
_KNOWN_SKUS_MAX: Final = 1_000_000


def _valid_sku(sku: str) -> bool:
    if sku in _KNOWN_SKUS:
        return True
    if SKU_RE.fullmatch(sku) is None:
        return False
    if len(_KNOWN_SKUS) < _KNOWN_SKUS_MAX:
        _KNOWN_SKUS.add(sku)
    return True


@dataclass(slots=True)
class FastBatch:
    """A batch that passed every check of §4.3 with only well-formed stock lists."""

    store: str
    epoch: str
    first_seq: int
    raws: list[msgspec.Raw]
    heads: list[_Head]


def envelope_raws(payload: bytes) -> list[msgspec.Raw] | None:
    """Each event's bytes as received, or None when the payload is not a batch envelope
    msgspec can read (the general path then decides, and hashes canonical forms)."""
    try:
        return _ENVELOPE.decode(payload).events
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def decode_fast(payload: bytes) -> FastBatch | None:
    """The batch, if it is valid UTF-8 JSON with ``v`` 1, a 1..64-character ``epoch`` and
    1..1000 events with contiguous safe seqs and well-formed stock lists; else None.

    ``store`` is returned for the caller to compare with the topic. Equivalence with the
    general path is tested with hypothesis (``tests/central/test_batches.py``)."""
    try:
        payload.decode("utf-8")  # msgspec does not check the strings it skips
        envelope = _ENVELOPE.decode(payload)
        heads = _HEADS.decode(payload).events
    except (UnicodeDecodeError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    if envelope.v != 1 or not 1 <= len(envelope.epoch) <= 64:
        return None
    count = len(heads)
    if not 1 <= count <= MAX_BATCH_ITEMS or count != len(envelope.events):
        return None
    first = heads[0].seq
    if first < 1 or first + count - 1 > MAX_SAFE_INT:
        return None
    if [h.seq for h in heads] != list(range(first, first + count)):
        return None
    valid = _valid_sku
    for head in heads:
        for line in head.stock:
            if not valid(line.sku):
                return None
        for line in head.reserve:
            if not valid(line.sku):
                return None
    return FastBatch(envelope.store, envelope.epoch, first, envelope.events, heads)


def add_deltas(cells: dict[str, list[int]], heads: Iterable[_Head]) -> None:
    """Add the stock and reserve lists of ``heads`` into ``cells[sku]`` = [on, reserved]
    (the hot path's twin of :func:`add_pairs`, on the decoded structs)."""
    for head in heads:
        for line in head.stock:
            cell = cells.get(line.sku)
            if cell is None:
                cells[line.sku] = [line.delta, 0]
            else:
                cell[0] += line.delta
        for line in head.reserve:
            cell = cells.get(line.sku)
            if cell is None:
                cells[line.sku] = [0, line.delta]
            else:
                cell[1] += line.delta


def add_pairs(cells: dict[str, list[int]], moves: Iterable[tuple[str, int]],
              holds: Iterable[tuple[str, int]], sign: int = 1) -> None:
    """Add (``sign=-1``: take away) (sku, delta) pairs into ``cells[sku]`` = [on, reserved]."""
    for sku, delta in moves:
        cells.setdefault(sku, [0, 0])[0] += sign * delta
    for sku, delta in holds:
        cells.setdefault(sku, [0, 0])[1] += sign * delta


_ABSENT: Any = object()


def event_deltas(event: dict[str, Any]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The general path: an event's (stock, reserve) pairs; raises WireFormatError naming
    what is malformed (that event is then quarantined, §4.3)."""
    moves = event.get("stock", _ABSENT)
    holds = event.get("reserve", _ABSENT)
    return ([] if moves is _ABSENT else check_deltas(moves, "stock"),
            [] if holds is _ABSENT else check_deltas(holds, "reserve"))


def raw_deltas(raw: bytes | msgspec.Raw
               ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """An event's pairs from its bytes: typed decoding, general path on anything odd."""
    try:
        head = _HEAD.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        event = orjson.loads(bytes(raw))
        if not isinstance(event, dict):
            raise WireFormatError("event is not an object") from None
        return event_deltas(event)
    if not all(_valid_sku(line.sku) for line in (*head.stock, *head.reserve)):
        return event_deltas(orjson.loads(bytes(raw)))  # raises with the precise path
    return ([(line.sku, line.delta) for line in head.stock],
            [(line.sku, line.delta) for line in head.reserve])


# --------------------------------------------------------------------------- runs
def digests(raws: Sequence[bytes | msgspec.Raw]) -> bytes:
    """SHA-256 of each event's bytes, concatenated (32 bytes per event)."""
    sha256 = hashlib.sha256
    return b"".join([sha256(raw).digest() for raw in raws])


def run_body(raws: Sequence[msgspec.Raw]) -> bytes:
    """The stored form of a run: its events' bytes as a JSON array (msgspec writes Raw
    values verbatim, twenty times faster than ``bytes.join`` over buffer objects)."""
    return _ENCODER.encode(raws)


def canonical_raws(events: Sequence[Any]) -> list[msgspec.Raw]:
    """Events re-encoded in canonical form, where their bytes as received are unknown."""
    return [msgspec.Raw(canonical_json(event)) for event in events]


def split_run(body: bytes | memoryview | str) -> list[msgspec.Raw]:
    """Each event's bytes of a stored run, in seq order."""
    if isinstance(body, memoryview):
        body = body.tobytes()
    return _RAW_LIST.decode(body)


def canonical_digest(raw: bytes | msgspec.Raw) -> str:
    """Hex SHA-256 of an event's canonical form (§2); of its bytes if they do not parse."""
    data = bytes(raw)
    try:
        return hashlib.sha256(canonical_json(orjson.loads(data))).hexdigest()
    except (orjson.JSONDecodeError, WireFormatError):
        return hashlib.sha256(data).hexdigest()


def same_event(kept: bytes | msgspec.Raw, received: bytes | msgspec.Raw) -> bool:
    """True when two encodings of an event have the same canonical form (§4.1 dedup)."""
    return bytes(kept) == bytes(received) or canonical_digest(kept) == canonical_digest(received)
