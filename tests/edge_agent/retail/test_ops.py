"""Pure retail rules: facts, deltas, money, limits (no ledger)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.errors import OperationError
from edge_agent.retail import ops
from edge_agent.retail.money import format_money, parse_money, quantize
from edge_agent.retail.requests import looks_like_card_data

cents = st.integers(min_value=0, max_value=10**7).map(lambda c: Decimal(c).scaleb(-2))
qtys = st.integers(min_value=1, max_value=50)
skus = st.sampled_from(["A-1", "B-2", "C-3", "D-4"])


def test_sale_fact_totals_change_and_stock() -> None:
    fact = ops.sale_fact(
        "s1", "till-1",
        [ops.PricedLine("A-1", 3, Decimal("0.10")), ops.PricedLine("B-2", 1, Decimal("19.99"),
                                                                     gtin="05901234123457")],
        [("cash", Decimal("25"))], currency="EUR", customer="LOY-1",
    )
    assert fact.type == "sale"
    assert fact.data["total"] == "20.29"  # 0.30 + 19.99, exact (floats give 20.290000000000003)
    assert fact.data["change"] == "4.71"
    assert fact.data["lines"][0] == {"sku": "A-1", "qty": 3, "unit_price": "0.10",
                                     "line_total": "0.30"}
    assert fact.data["lines"][1]["gtin"] == "05901234123457"
    assert fact.data["customer"] == "LOY-1"
    assert fact.stock == (("A-1", -3), ("B-2", -1))


def test_sale_rounds_per_line_half_up_and_respects_currency() -> None:
    weighed = ops.PricedLine("W", 1234, Decimal("0.0125"))  # 15.425 -> 15.43
    assert ops.sale_fact("s", "t", [weighed], [("card", Decimal("15.43"))],
                         currency="EUR").data["total"] == "15.43"
    yen = ops.sale_fact("s", "t", [ops.PricedLine("A", 3, Decimal("33.5"))],
                        [("cash", Decimal("101"))], currency="JPY")
    assert yen.data["total"] == "101"  # 100.5 rounds half up, no minor unit


def test_payment_short_is_refused() -> None:
    with pytest.raises(OperationError) as info:
        ops.sale_fact("s", "t", [ops.PricedLine("A", 2, Decimal("1.00"))],
                      [("cash", Decimal("1.99"))], currency="EUR")
    assert info.value.code == "payment_short"
    assert "1.99" in str(info.value)
    assert "2.00" in str(info.value)


def test_fixed_line_total_from_price_barcode_wins() -> None:
    line = ops.PricedLine("P", 1, Decimal("9.99"), line_total=Decimal("12.34"))
    fact = ops.sale_fact("s", "t", [line], [("cash", Decimal("12.34"))], currency="EUR")
    assert fact.data["total"] == "12.34"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(skus, qtys, cents), min_size=1, max_size=8))
def test_sale_total_is_exact_sum_of_lines(lines: list[tuple[str, int, Decimal]]) -> None:
    priced = [ops.PricedLine(s, q, p) for s, q, p in lines]
    expected = sum((p * q for _, q, p in lines), Decimal(0))
    fact = ops.sale_fact("s", "t", priced, [("cash", expected)], currency="EUR")
    assert parse_money(fact.data["total"]) == expected
    assert sum(parse_money(x["line_total"]) for x in fact.data["lines"]) == expected
    assert "change" not in fact.data
    assert sum(d for _, d in fact.stock) == -sum(q for _, q, _ in lines)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(skus, qtys, cents), min_size=1, max_size=4), st.data())
def test_returns_never_exceed_the_sale_and_refund_exactly(
    lines: list[tuple[str, int, Decimal]], data: st.DataObject
) -> None:
    sold = [ops.SoldLine(s, q, quantize(p * q, "EUR")) for s, q, p in lines]
    sold_qty = ops.sum_by_sku((x.sku, x.qty) for x in sold)
    sold_amount = {s: sum((x.line_total for x in sold if x.sku == s), Decimal(0))
                   for s in sold_qty}
    returned: dict[str, int] = {}
    refunded: dict[str, Decimal] = {}
    for _ in range(6):
        sku = data.draw(skus)
        qty = data.draw(st.integers(min_value=1, max_value=60))
        try:
            fact = ops.return_fact("r", [ops.ReturnLine(sku, qty)], restock=True, currency="EUR",
                                   sale_id="s", sold=sold, returned=returned)
        except OperationError as exc:
            refused: str | None = exc.code
        else:
            refused = None
        if refused is not None:
            assert refused == "return_exceeds_sale"
            assert qty + returned.get(sku, 0) > sold_qty.get(sku, 0)
            continue
        assert returned.get(sku, 0) + qty <= sold_qty[sku]
        returned[sku] = returned.get(sku, 0) + qty
        refunded[sku] = refunded.get(sku, Decimal(0)) + parse_money(fact.data["refund_total"])
        assert fact.stock == ((sku, qty),)
    for sku, qty in returned.items():
        assert refunded[sku] <= sold_amount[sku]
        if qty == sold_qty[sku]:  # returned in full, piece by piece: refunded to the cent
            assert refunded[sku] == sold_amount[sku]


def test_return_policy_and_restock_flags() -> None:
    with pytest.raises(OperationError) as info:
        ops.return_fact("r", [ops.ReturnLine("A", 1)], restock=True, currency="EUR",
                        allow_without_receipt=False)
    assert (info.value.code, info.value.status) == ("returns_need_receipt", 403)
    fact = ops.return_fact(
        "r", [ops.ReturnLine("A", 2), ops.ReturnLine("B", 1, restock=False)], restock=True,
        currency="EUR", catalog_prices={"A": Decimal("1.25"), "B": Decimal("3")},
    )
    assert fact.data["refund_total"] == "5.50"
    assert fact.stock == (("A", 2),)
    assert [x["restock"] for x in fact.data["lines"]] == [True, False]
    with pytest.raises(OperationError, match="unit_price") as unknown:
        ops.return_fact("r", [ops.ReturnLine("Z", 1)], restock=False, currency="EUR")
    assert unknown.value.code == "unknown_sku"


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(skus, st.integers(min_value=0, max_value=5), min_size=1),
       st.lists(st.lists(st.tuples(skus, st.integers(min_value=1, max_value=4)), min_size=1,
                         max_size=3), max_size=6))
def test_fulfilments_never_exceed_the_reservation(
    reserved: dict[str, int], attempts: list[list[tuple[str, int]]]
) -> None:
    status, remaining = "open", dict(reserved)
    handed: dict[str, int] = {}
    for lines in attempts:
        res = ops.Reservation("R1", "O1", status, remaining)
        try:
            fact, remaining = ops.fulfilment_fact(res, lines)
        except OperationError as exc:
            refused: str | None = exc.code
        else:
            refused = None
        if refused is not None:
            assert refused in {"fulfilment_exceeds_reservation", "reservation_closed"}
            continue
        assert fact.stock == fact.reserve == tuple((s, -q) for s, q in lines)
        for sku, qty in lines:
            handed[sku] = handed.get(sku, 0) + qty
        if all(q == 0 for q in remaining.values()):
            status = "fulfilled"
    for sku, qty in handed.items():
        assert qty <= reserved.get(sku, 0)
        assert remaining[sku] == reserved[sku] - qty


def test_fulfilment_refusals() -> None:
    with pytest.raises(OperationError) as missing:
        ops.fulfilment_fact(None, None)
    assert (missing.value.code, missing.value.status) == ("reservation_not_found", 404)
    with pytest.raises(OperationError) as closed:
        ops.fulfilment_fact(ops.Reservation("R", "O", "fulfilled", {"A": 0}), None)
    assert closed.value.code == "reservation_closed"
    fact, left = ops.fulfilment_fact(ops.Reservation("R", "O", "open", {"A": 2, "B": 1}), None)
    assert left == {"A": 0, "B": 0}
    assert fact.data["lines"] == [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]


def test_count_is_a_delta_against_expected() -> None:
    fact = ops.count_fact("c1", [("A", 7), ("B", 2), ("C", 0)], {"A": 10, "B": 2, "C": -3})
    assert fact.stock == (("A", -3), ("C", 3))
    assert fact.data["lines"][0] == {"sku": "A", "counted": 7, "expected": 10}
    with pytest.raises(OperationError, match="twice"):
        ops.count_fact("c", [("A", 1), ("A", 2)], {})


def test_movement_facts_carry_protocol_signs() -> None:
    assert ops.receipt_fact([("A", 3)], "ASN-1").stock == (("A", 3),)
    assert ops.transfer_fact("S002", "T1", [("A", 3)]).stock == (("A", -3),)
    adj = ops.adjustment_fact("damage", [("A", -2), ("B", 1)])
    assert adj.stock == (("A", -2), ("B", 1))
    with pytest.raises(OperationError):
        ops.adjustment_fact("theft", [("A", -1)])
    with pytest.raises(OperationError):
        ops.adjustment_fact("shrink", [("A", 0)])


def test_oversold_alert_only_below_zero() -> None:
    assert ops.oversold_fact("s", {"A": 0, "B": 3}) is None
    alert = ops.oversold_fact("s", {"A": -1, "B": 3})
    assert alert is not None
    assert alert.data == {"kind": "oversold", "sale_id": "s",
                          "skus": [{"sku": "A", "on_hand": -1}]}
    assert alert.stock == ()


def test_money_parsing_and_format() -> None:
    assert format_money(Decimal("2.005"), "EUR") == "2.01"
    assert format_money(Decimal("1"), "KWD") == "1.000"
    for bad in ("1e3", "1.", ".5", "NaN", "1,50", " 1"):
        with pytest.raises(ValueError, match="money"):
            parse_money(bad)


@pytest.mark.parametrize(("text", "card"), [
    ("4111111111111111", True),
    ("4111 1111 1111 1111", True),
    ("paid with 4111-1111-1111-1111 ok", True),
    ("%B4111111111111111^DOE/J^2512", True),
    ("LOY-123456", False),
    ("ASN 2026-11-25 #1234", False),
])
def test_card_data_detector(text: str, card: bool) -> None:
    assert looks_like_card_data(text) is card
