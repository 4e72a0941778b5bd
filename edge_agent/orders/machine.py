"""The fulfilment queue's rules, pure: which step an order may take in which state, what a
picking scan does to the picked lines, and the fact (event type, data, deltas) each step
records (the omnichannel contract, docs/protocol.md "Omnichannel orders").

No I/O: :mod:`edge_agent.orders.store` loads an :class:`Order` inside the ledger
transaction, calls these functions and writes what they return.

States::

    incoming ─accept─► accepted ─pick…─► picking ─last pick─► picked ─pack─► packed
        │                 │                 │                   │  └─ready─┐   │
        │                 │                 │                   │          ▼   ▼
        │                 │                 │                   │         ready ─► collected
        │                 │                 │                   │           └────► shipped
        └─────────────────┴────reject───────┴───────────────────┴── rejected (any state
                                                                   before the handover)
    order.cancel while the reservation is open ─► cancelled
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from edge_agent.errors import OperationError
from edge_agent.retail.ops import Fact

Status = Literal["incoming", "accepted", "picking", "picked", "packed", "ready",
                 "collected", "shipped", "rejected", "cancelled"]
STATUSES: tuple[Status, ...] = ("incoming", "accepted", "picking", "picked", "packed", "ready",
                                "collected", "shipped", "rejected", "cancelled")
CLOSED: frozenset[str] = frozenset({"collected", "shipped", "rejected", "cancelled"})
HANDED_OVER: frozenset[str] = frozenset({"collected", "shipped"})
REJECT_REASONS: tuple[str, ...] = ("not_found", "damaged", "no_staff", "other")
CANCEL_REASONS: tuple[str, ...] = ("customer", "rebrokered", "timeout", "operator")
FULFILMENTS: tuple[str, ...] = ("pickup", "ship")


@dataclass(frozen=True, slots=True)
class Line:
    line_no: int
    sku: str
    qty: int


@dataclass(frozen=True, slots=True)
class Picked:
    """Scanned units of one SKU (one entry per GTIN/serial seen)."""

    sku: str
    qty: int
    gtin: str | None = None
    serial: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sku": self.sku, "qty": self.qty}
        if self.gtin is not None:
            out["gtin"] = self.gtin
        if self.serial is not None:
            out["serial"] = self.serial
        return out


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    reservation_id: str
    fulfilment: str
    status: str
    lines: tuple[Line, ...]
    picked: tuple[Picked, ...] = ()
    pickup_code_hash: str | None = None
    ordered: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, *, order_id: str, reservation_id: str, fulfilment: str, status: str,
           lines: Sequence[Line], picked: Sequence[Picked] = (),
           pickup_code_hash: str | None = None) -> Order:
        ordered: dict[str, int] = {}
        for line in lines:
            ordered[line.sku] = ordered.get(line.sku, 0) + line.qty
        return cls(order_id, reservation_id, fulfilment, status, tuple(lines), tuple(picked),
                   pickup_code_hash, ordered)

    def picked_by_sku(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.picked:
            out[p.sku] = out.get(p.sku, 0) + p.qty
        return out

    def fully_picked(self) -> bool:
        done = self.picked_by_sku()
        return all(done.get(sku, 0) == qty for sku, qty in self.ordered.items())

    def ids(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "reservation_id": self.reservation_id}


def _refuse(order: Order, step: str, allowed: Sequence[str]) -> OperationError:
    if order.status in CLOSED:
        return OperationError("order_closed", f"order {order.order_id} is {order.status}; "
                              f"it cannot be {step}")
    return OperationError(
        "order_wrong_state",
        f"order {order.order_id} is {order.status}; {step} needs it "
        f"{' or '.join(allowed)}")


def _require(order: Order, step: str, allowed: Sequence[str]) -> None:
    if order.status not in allowed:
        raise _refuse(order, step, allowed)


# -- steps -----------------------------------------------------------------------------------
def accept(order: Order, by: str | None) -> tuple[Order, Fact]:
    _require(order, "accepted", ("incoming",))
    data = order.ids()
    if by:
        data["by"] = by
    return replace(order, status="accepted"), Fact("order.accepted", data)


def reject(order: Order, reason: str, remaining: Mapping[str, int]) -> tuple[Order, Fact]:
    """Reject before the handover; ``remaining`` is what the reservation still holds, and
    the fact releases exactly that (reserve -qty)."""
    if reason not in REJECT_REASONS:
        raise OperationError("invalid_reason", f"reason must be one of {list(REJECT_REASONS)}",
                             status=422)
    _require(order, "rejected", ("incoming", "accepted", "picking", "picked", "packed",
                                 "ready"))
    release = [(sku, qty) for sku, qty in remaining.items() if qty > 0]
    fact = Fact("order.rejected", {**order.ids(), "reason": reason,
                                   "lines": [{"sku": s, "qty": q} for s, q in release]},
                reserve=tuple((s, -q) for s, q in release))
    return replace(order, status="rejected"), fact


def pick(order: Order, sku: str, qty: int, *, gtin: str | None = None,
         serial: str | None = None) -> tuple[Order, Fact | None]:
    """One scan: ``qty`` units of ``sku``. A SKU the order does not hold is refused
    (``pick_wrong_item``), as is more than it holds (``pick_exceeds_order``); the scan that
    completes the order returns the ``order.picked`` fact."""
    # A scan after the last one is answered like any extra unit (pick_exceeds_order),
    # which is what the clerk needs to hear, not the order's state.
    _require(order, "picked", ("accepted", "picking", "picked", "packed", "ready"))
    if type(qty) is not int or qty <= 0:
        raise OperationError("invalid_quantity", "qty must be a positive integer", status=422)
    if sku not in order.ordered:
        raise OperationError("pick_wrong_item",
                             f"{sku} is not in order {order.order_id} "
                             f"(it holds {', '.join(sorted(order.ordered))})")
    have = order.picked_by_sku().get(sku, 0)
    want = order.ordered[sku]
    if have + qty > want:
        raise OperationError("pick_exceeds_order",
                             f"{sku}: the order wants {want}, {have} already picked; "
                             f"{qty} more would be too many")
    if serial is not None and any(p.serial == serial and p.sku == sku for p in order.picked):
        raise OperationError("pick_duplicate_serial",
                             f"{sku} serial {serial} was already picked for this order")
    _require(order, "picked", ("accepted", "picking"))
    picked = list(order.picked)
    for index, entry in enumerate(picked):
        if serial is None and entry.serial is None and (entry.sku, entry.gtin) == (sku, gtin):
            picked[index] = replace(entry, qty=entry.qty + qty)
            break
    else:
        picked.append(Picked(sku, qty, gtin, serial))
    after = replace(order, picked=tuple(picked), status="picking")
    if not after.fully_picked():
        return after, None
    fact = Fact("order.picked", {**order.ids(),
                                 "lines": [p.as_dict() for p in after.picked]})
    return replace(after, status="picked"), fact


def pack(order: Order, parcels: int | None) -> tuple[Order, Fact]:
    _require(order, "packed", ("picked",))
    data = order.ids()
    if parcels is not None:
        data["parcels"] = parcels
    return replace(order, status="packed"), Fact("order.packed", data)


def ready(order: Order) -> tuple[Order, Fact]:
    _require(order, "marked ready", ("picked", "packed"))
    return replace(order, status="ready"), Fact("order.ready", order.ids())


def hash_pickup_code(code: str) -> str:
    """How central hashes a customer's pickup code: SHA-256 of its UTF-8, lower-case hex."""
    return hashlib.sha256(code.strip().encode()).hexdigest()


def check_pickup_code(order: Order, code: str | None) -> None:
    if order.pickup_code_hash is None:
        return
    if not code:
        raise OperationError("pickup_code_required",
                             "this order is handed over only with the customer's pickup code",
                             status=422)
    expected = order.pickup_code_hash.strip().lower().removeprefix("sha256:")
    if not hmac.compare_digest(hash_pickup_code(code), expected):
        raise OperationError("pickup_code_wrong", "the pickup code does not match this order",
                             status=403)


def _handover(order: Order, how: str, tracking: str | None) -> tuple[Order, Fact]:
    take = list(order.picked_by_sku().items())
    data: dict[str, Any] = {"reservation_id": order.reservation_id, "order_ref": order.order_id,
                            "order_id": order.order_id, "how": how,
                            "lines": [{"sku": s, "qty": q} for s, q in take]}
    if tracking is not None:
        data["tracking"] = tracking
    status = "collected" if how == "collected" else "shipped"
    return replace(order, status=status), Fact(
        "fulfilment", data, stock=tuple((s, -q) for s, q in take),
        reserve=tuple((s, -q) for s, q in take))


def collect(order: Order, code: str | None) -> tuple[Order, Fact]:
    """The customer collects: the ``fulfilment`` fact (stock -qty, reserve -qty)."""
    if order.fulfilment != "pickup":
        raise OperationError("fulfilment_mismatch",
                             f"order {order.order_id} is to be shipped, not collected")
    _require(order, "collected", ("ready",))
    check_pickup_code(order, code)
    return _handover(order, "collected", None)


def ship(order: Order, tracking: str | None) -> tuple[Order, Fact]:
    if order.fulfilment != "ship":
        raise OperationError("fulfilment_mismatch",
                             f"order {order.order_id} is for pickup at the store, not shipping")
    _require(order, "shipped", ("packed", "ready"))
    return _handover(order, "shipped", tracking)


def cancellable(order: Order) -> bool:
    """``order.cancel`` acts only while the reservation is open (before the handover, and
    not after a rejection or an earlier cancel)."""
    return order.status not in CLOSED
