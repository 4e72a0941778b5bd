"""Central's side of an order, for the queue's tests: ``order.assign`` / ``order.cancel``
commands applied through the agent's real command path (``apply_command``)."""

from __future__ import annotations

import uuid
from typing import Any

from edge_agent.command_apply import apply_command
from edge_agent.ledger import Ledger, Tx
from edge_agent.orders.machine import hash_pickup_code
from sync.wire import now_ts


def command(tx: Tx, type_: str, data: dict[str, Any],
            reserve: list[tuple[str, int]] | None = None) -> tuple[str, str | None]:
    """Apply the next command as the inbox does (cseq = applied_cseq + 1)."""
    cmd: dict[str, Any] = {"cseq": tx.applied_cseq + 1, "id": str(uuid.uuid4()),
                           "type": type_, "ts": now_ts(), "data": data}
    if reserve:
        cmd["reserve"] = [{"sku": s, "delta": d} for s, d in reserve]
    return apply_command(tx, cmd)


def assign_data(order_id: str, lines: dict[str, int], *, attempt: int = 1,
                fulfilment: str = "pickup", code: str | None = None,
                accept_by: str = "2099-01-01T00:00:00.000Z") -> dict[str, Any]:
    data: dict[str, Any] = {
        "order_id": order_id, "reservation_id": f"ord-{order_id}-{attempt}", "channel": "web",
        "fulfilment": fulfilment, "customer_ref": "cust-77", "accept_by": accept_by,
        "lines": [{"line_no": n, "sku": s, "qty": q}
                  for n, (s, q) in enumerate(lines.items(), start=1)],
    }
    if code is not None:
        data["pickup_code_hash"] = hash_pickup_code(code)
    if fulfilment == "ship":
        data["ship_to"] = {"postcode": "1011", "lat": "52.37", "lon": "4.89"}  # §2: no floats
    return data


def assign(ledger: Ledger, order_id: str, lines: dict[str, int],
           **kw: Any) -> tuple[str, str | None]:
    data = assign_data(order_id, lines, **kw)
    return ledger.write_blocking(lambda tx: command(
        tx, "order.assign", data, reserve=list(lines.items())))


def cancel(ledger: Ledger, order_id: str, *, attempt: int = 1,
           reason: str = "customer") -> tuple[str, str | None]:
    return ledger.write_blocking(lambda tx: command(tx, "order.cancel", {
        "order_id": order_id, "reservation_id": f"ord-{order_id}-{attempt}",
        "reason": reason}))


def stock_in(ledger: Ledger, lines: dict[str, int]) -> None:
    """Stock on hand, as central's ``stock.adjust`` sets it."""
    def op(tx: Tx) -> tuple[str, str | None]:
        cmd: dict[str, Any] = {"cseq": tx.applied_cseq + 1, "id": str(uuid.uuid4()),
                               "type": "stock.adjust", "ts": now_ts(), "data": {},
                               "stock": [{"sku": s, "delta": q} for s, q in lines.items()]}
        return apply_command(tx, cmd)

    ledger.write_blocking(op)
