"""Recall commands (protocol extension ``recall.add`` / ``recall.lift``): their data
checked the same way by central, before it issues one, and by the store, before it
applies one.

A recall names a trade item by GTIN and either its lot (GS1 AI 10) or its serial
(AI 21), as the item's GS1 DataMatrix, GS1-128 or Digital Link carries them.  Lot and
serial use GS1's character set 82 (``!"%&'()*+,-./0-9:;<=>?A-Z_a-z``), 1-20 characters;
the GTIN is given as 8, 12, 13 or 14 digits with a correct check digit and is sent
as 14 digits.  See docs/protocol.md "Recalls".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from sync.errors import SyncError

__all__ = [
    "RECALL_ADD",
    "RECALL_BLOCKED",
    "RECALL_LIFT",
    "RECALL_TYPES",
    "RecallInvalid",
    "check_recall",
]

RECALL_ADD: Final = "recall.add"
RECALL_LIFT: Final = "recall.lift"
RECALL_TYPES: Final = frozenset({RECALL_ADD, RECALL_LIFT})
RECALL_BLOCKED: Final = "recall.blocked"
"""The event type a store records each time the till refuses a recalled item."""

RECALL_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
CSET82_RE: Final = re.compile(r"[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}")
REASON_MAX: Final = 200


class RecallInvalid(SyncError, ValueError):
    """The data of a recall command is malformed (the message says which field)."""


def _gtin14(value: Any) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or \
            len(value) not in (8, 12, 13, 14):
        raise RecallInvalid("gtin must be a GTIN of 8, 12, 13 or 14 digits")
    total = sum((ord(ch) - 48) * (3 if pos % 2 == 0 else 1)
                for pos, ch in enumerate(reversed(value[:-1])))
    if (10 - total % 10) % 10 != ord(value[-1]) - 48:
        raise RecallInvalid(f"gtin {value} has a wrong check digit")
    return value.zfill(14)


def check_recall(command_type: str, data: Any) -> dict[str, Any]:
    """The command's data, normalised; :class:`RecallInvalid` if malformed."""
    if not isinstance(data, Mapping):
        raise RecallInvalid("data must be an object")
    recall_id = data.get("recall_id")
    if not isinstance(recall_id, str) or RECALL_ID_RE.fullmatch(recall_id) is None:
        raise RecallInvalid("recall_id must be 1-64 characters of A-Z a-z 0-9 . _ : -")
    if command_type == RECALL_LIFT:
        return {"recall_id": recall_id}
    if command_type != RECALL_ADD:
        raise RecallInvalid(f"{command_type!r} is not a recall command")
    out: dict[str, Any] = {"recall_id": recall_id, "gtin": _gtin14(data.get("gtin"))}
    lot, serial = data.get("lot"), data.get("serial")
    if (lot is None) == (serial is None):
        raise RecallInvalid("give exactly one of lot (AI 10) or serial (AI 21)")
    for name, value in (("lot", lot), ("serial", serial)):
        if value is None:
            continue
        if not isinstance(value, str) or CSET82_RE.fullmatch(value) is None:
            raise RecallInvalid(f"{name} must be 1-20 characters of GS1 character set 82")
        out[name] = value
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > REASON_MAX or not reason.isprintable():
        raise RecallInvalid(f"reason must be printable text of at most {REASON_MAX} "
                            "characters")
    out["reason"] = reason
    return out
