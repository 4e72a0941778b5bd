"""Wire primitives of PROTOCOL v1 §2 shared by the store and the reference central.

Pure functions only: canonical JSON, the fixed limits, the value checks every fact must
pass before it is recorded, timestamps, and the stock digest of §7.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from sync.errors import WireFormatError

PROTOCOL_VERSION: Final = 1
MAX_PAYLOAD_BYTES: Final = 1024 * 1024
MAX_BATCH_ITEMS: Final = 1000
MAX_ITEM_BYTES: Final = 64 * 1024
MAX_SAFE_INT: Final = 2**53 - 1

SKU_RE: Final = re.compile(r"[A-Za-z0-9._:/-]{1,64}")
STORE_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEVICE_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
MONEY_RE: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?")
CURRENCY_RE: Final = re.compile(r"[A-Z]{3}")

_MAX_DEPTH: Final = 32


def canonical_json(obj: Any) -> bytes:
    """Canonical form of §2, byte-identical to
    ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()``.

    orjson produces the same bytes for the values the protocol allows (no floats, str keys,
    valid Unicode) about twenty times faster; ``tests/sync/test_wire.py`` proves the
    equivalence with hypothesis.
    """
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise WireFormatError(f"not encodable as canonical JSON: {exc}") from exc


def _contains_float(obj: Any) -> bool:
    """Fast float detector (no paths); :func:`check_value` explains what it finds."""
    kind = type(obj)
    if kind is dict:
        values: Iterable[Any] = obj.values()
    elif kind is list or kind is tuple:
        values = obj
    else:
        return kind is float
    for value in values:
        vk = type(value)
        if vk is str or vk is int or vk is bool or value is None:
            continue
        if vk is float or _contains_float(value):
            return True
    return False


def encode_fact(obj: Any) -> bytes:
    """Canonical JSON of a value the store is about to record, checked against §2.

    orjson enforces what it can (str keys, valid Unicode, the 53-bit integer limit,
    nesting); floats, which it would accept, are found by a quick walk. Only a bad
    value pays for the full :func:`check_value` walk, which names its JSON path.
    """
    try:
        payload = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER)
    except (TypeError, orjson.JSONEncodeError) as exc:
        check_value(obj)  # raises with the JSON path when it can name one
        raise WireFormatError(f"not encodable as canonical JSON: {exc}") from exc
    if _contains_float(obj):
        check_value(obj)
    return payload


def loads(payload: bytes | str) -> Any:
    """Parse JSON; malformed text, invalid UTF-8 and excessive nesting raise WireFormatError."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise WireFormatError(f"invalid JSON: {exc}") from exc


def check_value(obj: Any, path: str = "$", depth: int = 0) -> None:
    """Reject what §2 forbids: floats, integers beyond 2^53, non-string keys, lone
    surrogates, and absurd nesting. Raises WireFormatError naming the JSON path."""
    if depth > _MAX_DEPTH:
        raise WireFormatError(f"{path}: nested deeper than {_MAX_DEPTH} levels")
    if obj is None or obj is True or obj is False:
        return
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise WireFormatError(f"{path}: string is not valid Unicode") from exc
        return
    if isinstance(obj, int):
        if not -MAX_SAFE_INT <= obj <= MAX_SAFE_INT:
            raise WireFormatError(f"{path}: integer {obj} is outside ±2^53")
        return
    if isinstance(obj, float):
        raise WireFormatError(f"{path}: floating-point numbers are not allowed, use a string")
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise WireFormatError(f"{path}: object key {key!r} is not a string")
            check_value(value, f"{path}.{key}", depth + 1)
        return
    if isinstance(obj, list | tuple):
        for index, value in enumerate(obj):
            check_value(value, f"{path}[{index}]", depth + 1)
        return
    raise WireFormatError(f"{path}: {type(obj).__name__} is not a JSON value")


def check_deltas(deltas: Any, path: str) -> list[tuple[str, int]]:
    """Validate a ``stock`` or ``reserve`` list (§4.2) and return it as (sku, delta) pairs.

    Malformed lists are exactly what quarantines an event or command, so this is strict:
    a list of objects each with a valid ``sku`` and an integer ``delta`` (bool is not int).
    """
    if not isinstance(deltas, list):
        raise WireFormatError(f"{path}: must be a list")
    out: list[tuple[str, int]] = []
    for index, item in enumerate(deltas):
        if not isinstance(item, dict):
            raise WireFormatError(f"{path}[{index}]: must be an object")
        sku = item.get("sku")
        delta = item.get("delta")
        if not isinstance(sku, str) or SKU_RE.fullmatch(sku) is None:
            raise WireFormatError(f"{path}[{index}].sku: {sku!r} is not a valid SKU")
        if type(delta) is not int or not -MAX_SAFE_INT <= delta <= MAX_SAFE_INT:
            raise WireFormatError(f"{path}[{index}].delta: {delta!r} is not a safe integer")
        out.append((sku, delta))
    return out


def check_sku(sku: str) -> str:
    if SKU_RE.fullmatch(sku) is None:
        raise WireFormatError(f"{sku!r} is not a valid SKU ([A-Za-z0-9._:/-]{{1,64}})")
    return sku


def check_money(amount: str) -> str:
    if MONEY_RE.fullmatch(amount) is None:
        raise WireFormatError(f"{amount!r} is not a decimal money string")
    return amount


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_ts(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-25T09:15:02.123Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_ts_cache: tuple[int, str] = (-1, "")


def now_ts() -> str:
    """The current time in the §2 form. Hot (every fact), so the seconds part is cached."""
    global _ts_cache  # noqa: PLW0603 - a one-entry cache; tuple assignment is atomic
    now = time.time()
    second = int(now)
    cached_second, prefix = _ts_cache
    if cached_second != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _ts_cache = (second, prefix)
    return f"{prefix}.{int((now - second) * 1000):03d}Z"


def parse_ts(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise WireFormatError(f"{text!r} is not an RFC 3339 timestamp") from exc
    if moment.tzinfo is None:
        raise WireFormatError(f"{text!r} has no time zone")
    return moment.astimezone(UTC)


def digest_lines(rows: Iterable[tuple[str, int, int]]) -> tuple[int, str]:
    """Stock digest of §7 over (sku, on_hand, reserved) rows in any order.

    Returns (number of lines, lower-case hex SHA-256). Rows that are zero on both
    counts are skipped; the rest are sorted by the SKU's UTF-8 bytes.
    """
    kept = sorted(
        ((sku.encode("utf-8"), on_hand, reserved) for sku, on_hand, reserved in rows
         if on_hand != 0 or reserved != 0),
    )
    hasher = hashlib.sha256()
    for sku_bytes, on_hand, reserved in kept:
        hasher.update(sku_bytes + b"\t" + str(on_hand).encode() + b"\t" + str(reserved).encode()
                      + b"\n")
    return len(kept), hasher.hexdigest()


def new_uuid() -> str:
    """A random (version 4) UUID string, about three times cheaper than ``str(uuid4())``."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_VARIANT: Final = "89ab"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
