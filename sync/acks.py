"""Classifying an incoming ``…/events/ack`` payload (PROTOCOL §4.3): an ``EventAck`` or why not.

The drop rules, in order: size, JSON, ``v``, ``store``, message shape; each reason is
counted by the caller as ``events_ack:<reason>``. Pure: no I/O, no state.
"""

from __future__ import annotations

from typing import Any

import pydantic

from sync.errors import WireFormatError
from sync.messages import EventAck
from sync.wire import MAX_PAYLOAD_BYTES, loads

__all__ = ["classify_ack"]


def classify_ack(payload: bytes, store: str) -> EventAck | str:
    """The ack in ``payload`` for ``store``, or the reason it is dropped (``too_large``,
    ``invalid_json``, ``version``, ``store``, ``malformed``). ``payload`` is not empty."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return "too_large"
    try:
        obj: Any = loads(payload)
    except WireFormatError:
        return "invalid_json"
    if not isinstance(obj, dict) or obj.get("v") != 1:
        return "version"
    if obj.get("store") != store:
        return "store"
    try:
        return EventAck.model_validate(obj)
    except pydantic.ValidationError:
        return "malformed"
