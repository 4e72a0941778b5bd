"""Validation of the omnichannel commands (``order.assign``, ``order.cancel``) before
central issues them: their ``data`` as the wire contract has it (docs/protocol.md,
"Omnichannel orders") and the ``reserve`` list an ``order.assign`` carries.
"""

from __future__ import annotations

from typing import Any, Final

from central.errors import InvalidCommandError
from central.storage import Connection
from sync.wire import SKU_RE

ORDER_COMMANDS: Final = frozenset({"order.assign", "order.cancel"})
CANCEL_REASONS: Final = frozenset({"customer", "rebrokered", "timeout", "operator"})
_OPTIONAL = ("customer_ref", "ship_to", "pickup_code_hash")


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > 128:
        raise InvalidCommandError(f"order command needs {key} (1-128 characters)")
    return value


def plan_order_command(conn: Connection, store: str, kind: str, data: dict[str, Any]
                       ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(data, reserve) of a valid command; :class:`InvalidCommandError` otherwise."""
    order_id = _text(data, "order_id")
    rid = _text(data, "reservation_id")
    if kind == "order.cancel":
        reason = data.get("reason")
        if reason not in CANCEL_REASONS:
            raise InvalidCommandError(f"order.cancel reason must be one of "
                                      f"{sorted(CANCEL_REASONS)}")
        return {"order_id": order_id, "reservation_id": rid, "reason": reason}, []
    if conn.execute("SELECT 1 FROM reservations WHERE store = ? AND reservation_id = ?",
                    (store, rid)):
        raise InvalidCommandError(f"reservation {rid} already exists for {store}")
    lines = data.get("lines")
    if not isinstance(lines, list) or not lines:
        raise InvalidCommandError("order.assign needs lines")
    clean: list[dict[str, Any]] = []
    for line in lines:
        if (not isinstance(line, dict) or not isinstance(line.get("sku"), str)
                or SKU_RE.fullmatch(line["sku"]) is None
                or type(line.get("qty")) is not int or line["qty"] <= 0
                or type(line.get("line_no")) is not int):
            raise InvalidCommandError(f"invalid order line {line!r}")
        clean.append({"line_no": line["line_no"], "sku": line["sku"], "qty": line["qty"]})
    if data.get("fulfilment") not in ("pickup", "ship"):
        raise InvalidCommandError("order.assign fulfilment must be pickup or ship")
    out: dict[str, Any] = {"order_id": order_id, "reservation_id": rid,
                           "channel": _text(data, "channel"),
                           "fulfilment": data["fulfilment"], "lines": clean,
                           "accept_by": _text(data, "accept_by")}
    out.update({key: data[key] for key in _OPTIONAL if data.get(key) is not None})
    return out, [{"sku": ln["sku"], "delta": ln["qty"]} for ln in clean]
