"""Pure retail logic: each operation becomes one fact (PROTOCOL §4.2) with the stock and
reserve deltas the protocol defines. No I/O here: the service gathers what a rule needs
(catalog rows, what a sale sold, a reservation's remaining lines) inside the ledger
transaction, calls these functions and appends the fact they return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from edge_agent.errors import OperationError
from edge_agent.retail.money import format_money, format_price, quantize


@dataclass(frozen=True, slots=True)
class Fact:
    type: str
    data: dict[str, Any]
    stock: tuple[tuple[str, int], ...] = ()
    reserve: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class CatalogItem:
    sku: str
    name: str
    price: Decimal
    currency: str
    uom: str = "unit"
    active: bool = True


@dataclass(frozen=True, slots=True)
class PricedLine:
    """A sale line resolved to a SKU. ``line_total`` is fixed when a price-embedded barcode
    gave it; otherwise it is ``qty * unit_price`` rounded to the currency."""

    sku: str
    qty: int
    unit_price: Decimal
    gtin: str | None = None
    line_total: Decimal | None = None
    epc: str | None = None
    serial: str | None = None


@dataclass(frozen=True, slots=True)
class SoldLine:
    sku: str
    qty: int
    line_total: Decimal


@dataclass(frozen=True, slots=True)
class ReturnLine:
    sku: str
    qty: int
    restock: bool | None = None
    unit_price: Decimal | None = None
    epc: str | None = None
    serial: str | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    order_ref: str
    status: str
    remaining: Mapping[str, int] = field(default_factory=dict)


def _positive(qty: int, what: str) -> int:
    if type(qty) is not int or qty <= 0:
        raise OperationError("invalid_quantity", f"{what}: quantity must be a positive integer",
                             status=422)
    return qty


def sum_by_sku(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for sku, qty in lines:
        out[sku] = out.get(sku, 0) + qty
    return out


# -- sale ------------------------------------------------------------------------------------
def line_total(line: PricedLine, currency: str) -> Decimal:
    if line.line_total is not None:
        return quantize(line.line_total, currency)
    return quantize(line.unit_price * line.qty, currency)


def sale_fact(
    sale_id: str,
    terminal: str,
    lines: Sequence[PricedLine],
    payments: Sequence[tuple[str, Decimal]],
    *,
    currency: str,
    customer: str | None = None,
) -> Fact:
    """The ``sale`` fact; payments must cover the total (the excess is change)."""
    if not lines:
        raise OperationError("empty_sale", "a sale needs at least one line", status=422)
    out_lines: list[dict[str, Any]] = []
    total = Decimal(0)
    for index, line in enumerate(lines):
        _positive(line.qty, f"lines[{index}]")
        if line.unit_price < 0 or (line.line_total is not None and line.line_total < 0):
            raise OperationError("invalid_price", f"lines[{index}]: negative price", status=422)
        amount = line_total(line, currency)
        total += amount
        entry: dict[str, Any] = {
            "sku": line.sku, "qty": line.qty, "unit_price": format_price(line.unit_price),
            "line_total": format_money(amount, currency),
        }
        if line.gtin is not None:
            entry["gtin"] = line.gtin
        if line.epc is not None:
            entry["epc"], entry["serial"] = line.epc, line.serial
        out_lines.append(entry)
    paid = Decimal(0)
    for _, amount in payments:
        if amount < 0:
            raise OperationError("invalid_payment", "a payment amount must not be negative",
                                 status=422)
        paid += amount
    not_cash = sum((a for m, a in payments if m not in CHANGE_METHODS), Decimal(0))
    if not_cash > total:
        raise OperationError(
            "overpayment",
            f"non-cash payments of {format_money(not_cash, currency)} {currency} exceed the "
            f"total of {format_money(total, currency)} {currency}: only cash gives change",
            status=422,
        )
    if paid < total:
        raise OperationError(
            "payment_short",
            f"payments of {format_money(paid, currency)} {currency} do not cover the total of "
            f"{format_money(total, currency)} {currency}",
            status=422,
        )
    data: dict[str, Any] = {
        "sale_id": sale_id,
        "terminal": terminal,
        "lines": out_lines,
        "total": format_money(total, currency),
        "currency": currency,
        "payments": [{"method": m, "amount": format_price(a)} for m, a in payments],
    }
    if paid > total:
        data["change"] = format_money(paid - total, currency)
    if customer is not None:
        data["customer"] = customer
    return Fact("sale", data, tuple((line.sku, -line.qty) for line in lines))


def oversold_fact(sale_id: str, on_hand_after: Mapping[str, int]) -> Fact | None:
    """The ``alert`` a sale raises when it takes SKUs below zero (DESIGN §2.7)."""
    negative = sorted((sku, qty) for sku, qty in on_hand_after.items() if qty < 0)
    if not negative:
        return None
    return Fact("alert", {
        "kind": "oversold", "sale_id": sale_id,
        "skus": [{"sku": sku, "on_hand": qty} for sku, qty in negative],
    })


# -- return ----------------------------------------------------------------------------------
def return_fact(
    return_id: str,
    lines: Sequence[ReturnLine],
    *,
    restock: bool,
    currency: str,
    sale_id: str | None = None,
    sold: Sequence[SoldLine] | None = None,
    returned: Mapping[str, int] | None = None,
    catalog_prices: Mapping[str, Decimal] | None = None,
    allow_without_receipt: bool = True,
    customer: str | None = None,
) -> Fact:
    """The ``return`` fact. Against a sale (``sold`` given), each SKU's returned quantity,
    with what was returned before, stays within what was sold, and the refund is the sold
    amount pro rata (cumulative rounding, so returning a line piece by piece refunds exactly
    its total). Without a receipt the store policy decides, at the given or catalog price."""
    if not lines:
        raise OperationError("empty_return", "a return needs at least one line", status=422)
    for index, line in enumerate(lines):
        _positive(line.qty, f"lines[{index}]")
    wanted = sum_by_sku((line.sku, line.qty) for line in lines)
    refund = Decimal(0)
    if sold is not None:
        sold_qty = sum_by_sku((x.sku, x.qty) for x in sold)
        sold_amount: dict[str, Decimal] = {}
        for sold_line in sold:
            sold_amount[sold_line.sku] = (sold_amount.get(sold_line.sku, Decimal(0))
                                          + sold_line.line_total)
        before = returned or {}
        for sku, qty in wanted.items():
            have = sold_qty.get(sku, 0)
            done = before.get(sku, 0)
            if qty + done > have:
                raise OperationError(
                    "return_exceeds_sale",
                    f"{sku}: returning {qty} but the sale sold {have} and {done} "
                    "were already returned",
                )
            amount = sold_amount[sku]
            refund += (quantize(amount * (done + qty) / have, currency)
                       - quantize(amount * done / have, currency))
    else:
        if not allow_without_receipt:
            raise OperationError(
                "returns_need_receipt",
                "this store takes returns only against a sale (give sale_id)", status=403,
            )
        prices = catalog_prices or {}
        for line in lines:
            price = line.unit_price if line.unit_price is not None else prices.get(line.sku)
            if price is None:
                raise OperationError("unknown_sku", f"{line.sku} is not in the catalog; give "
                                     "unit_price for a return without receipt", status=422)
            refund += quantize(price * line.qty, currency)
    out_lines = []
    stock = []
    for line in lines:
        keep = restock if line.restock is None else line.restock
        entry: dict[str, Any] = {"sku": line.sku, "qty": line.qty, "restock": keep}
        if line.epc is not None:
            entry["epc"], entry["serial"] = line.epc, line.serial
        out_lines.append(entry)
        if keep:
            stock.append((line.sku, line.qty))
    data: dict[str, Any] = {
        "return_id": return_id, "lines": out_lines, "refund_total": format_money(refund, currency),
        "currency": currency, "restock": restock,
    }
    if sale_id is not None:
        data["sale_id"] = sale_id
    if customer is not None:
        data["customer"] = customer
    return Fact("return", data, tuple(stock))


# -- stock movements -------------------------------------------------------------------------
def receipt_fact(lines: Sequence[tuple[str, int]], ref: str | None = None) -> Fact:
    for index, (_, qty) in enumerate(lines):
        _positive(qty, f"lines[{index}]")
    data: dict[str, Any] = {"lines": [{"sku": s, "qty": q} for s, q in lines]}
    if ref is not None:
        data["ref"] = ref
    return Fact("receipt", data, tuple(lines))


CHANGE_METHODS = frozenset({"cash"})
"""Payment methods that can give change; a card (or voucher) pays at most the total."""

ADJUSTMENT_REASONS = frozenset({"damage", "shrink", "found", "correction"})


def adjustment_fact(reason: str, lines: Sequence[tuple[str, int]], note: str | None = None) -> Fact:
    if reason not in ADJUSTMENT_REASONS:
        raise OperationError("invalid_reason", f"reason must be one of "
                             f"{sorted(ADJUSTMENT_REASONS)}", status=422)
    for index, (_, qty) in enumerate(lines):
        if type(qty) is not int or qty == 0:
            raise OperationError("invalid_quantity", f"lines[{index}]: qty must be a non-zero "
                                 "integer", status=422)
    data: dict[str, Any] = {"reason": reason, "lines": [{"sku": s, "qty": q} for s, q in lines]}
    if note is not None:
        data["note"] = note
    return Fact("adjustment", data, tuple(lines))


def count_fact(count_id: str, counted: Sequence[tuple[str, int]],
               expected: Mapping[str, int]) -> Fact:
    """``expected`` is the store's on-hand at this moment, so the count is a delta."""
    seen: set[str] = set()
    lines = []
    stock = []
    for sku, qty in counted:
        if sku in seen:
            raise OperationError("duplicate_sku", f"{sku} is counted twice in one count",
                                 status=422)
        if type(qty) is not int or qty < 0:
            raise OperationError("invalid_quantity", f"{sku}: counted must be >= 0", status=422)
        seen.add(sku)
        before = expected.get(sku, 0)
        lines.append({"sku": sku, "counted": qty, "expected": before})
        if qty != before:
            stock.append((sku, qty - before))
    return Fact("count", {"count_id": count_id, "lines": lines}, tuple(stock))


def transfer_fact(to_store: str, ref: str, lines: Sequence[tuple[str, int]]) -> Fact:
    for index, (_, qty) in enumerate(lines):
        _positive(qty, f"lines[{index}]")
    return Fact("transfer.out", {"to_store": to_store, "ref": ref,
                                 "lines": [{"sku": s, "qty": q} for s, q in lines]},
                tuple((s, -q) for s, q in lines))


def fulfilment_fact(
    reservation: Reservation | None, lines: Sequence[tuple[str, int]] | None
) -> tuple[Fact, dict[str, int]]:
    """The ``fulfilment`` fact and the reservation's remaining quantities after it.

    ``lines`` None hands over everything still reserved. A closed reservation, an unknown
    one, or more than remains of a SKU is refused."""
    if reservation is None:
        raise OperationError("reservation_not_found", "no such reservation", status=404)
    if reservation.status != "open":
        raise OperationError("reservation_closed",
                             f"reservation {reservation.reservation_id} is {reservation.status}")
    remaining = dict(reservation.remaining)
    if lines is None:
        take = [(sku, qty) for sku, qty in remaining.items() if qty > 0]
        if not take:
            raise OperationError("reservation_closed", "nothing is left to hand over")
    else:
        take = list(lines)
        for index, (_, qty) in enumerate(take):
            _positive(qty, f"lines[{index}]")
    for sku, qty in sum_by_sku(take).items():
        left = remaining.get(sku, 0)
        if qty > left:
            raise OperationError(
                "fulfilment_exceeds_reservation",
                f"{sku}: handing over {qty} but only {left} remain reserved",
            )
        remaining[sku] = left - qty
    fact = Fact(
        "fulfilment",
        {"reservation_id": reservation.reservation_id, "order_ref": reservation.order_ref,
         "lines": [{"sku": s, "qty": q} for s, q in take]},
        stock=tuple((s, -q) for s, q in take),
        reserve=tuple((s, -q) for s, q in take),
    )
    return fact, remaining
