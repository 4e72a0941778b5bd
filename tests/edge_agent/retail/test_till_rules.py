"""Expiry and best-before against the store's own midnight, and the policies (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from drivers.barcode import interpret
from edge_agent.retail.till import TillRefused, TillRules, check_item

GTIN = "09506000134352"
# 2026-01-01 23:30 UTC: still January 1st in London, already January 2nd in Auckland
NOW = dt.datetime(2026, 1, 1, 23, 30, tzinfo=dt.UTC)


def no_recall(*_: Any) -> None:
    return None


def rules(timezone: str, **kw: Any) -> TillRules:
    return TillRules(timezone=timezone, clock=lambda: NOW, **kw)


def test_a_date_passes_at_the_stores_midnight() -> None:
    info = interpret(f"]d201{GTIN}17260101")  # expires on January 1st
    assert check_item(info, "G", rules("Europe/London"), "sale", no_recall) == []
    with pytest.raises(TillRefused) as caught:
        check_item(info, "G", rules("Pacific/Auckland"), "sale", no_recall)
    assert caught.value.code == "expired"
    assert "Pacific/Auckland" in str(caught.value)
    type_, data = caught.value.event
    assert (type_, data["kind"], data["date"], data["today"]) == (
        "alert", "expired_blocked", "2026-01-01", "2026-01-02")


def test_policies_and_markdown() -> None:
    past = interpret(f"]d201{GTIN}15251231")  # best before 2025-12-31
    assert check_item(past, "G", rules("UTC", best_before_policy="allow"), "sale",
                      no_recall) == []
    assert check_item(past, "G", rules("UTC", best_before_policy="warn"), "sale",
                      no_recall) == [{"code": "best_before_passed", "date": "2025-12-31"}]
    with pytest.raises(TillRefused, match="best-before"):
        check_item(past, "G", rules("UTC"), "sale", no_recall)
    # receiving and counting expired stock is allowed; a lookup only says so
    assert check_item(past, "G", rules("UTC"), "receive", no_recall) == []
    assert check_item(past, "G", rules("UTC"), "lookup", no_recall)[0]["code"] == \
        "best_before_passed"
    soon = interpret(f"]d201{GTIN}17260104")
    assert check_item(soon, "G", rules("UTC", markdown_days=3), "sale", no_recall) == [
        {"code": "expiry_markdown", "date": "2026-01-04", "days_left": 3}]
    assert check_item(soon, "G", rules("UTC", markdown_days=2), "sale", no_recall) == []


def test_a_recall_is_not_a_matter_of_policy() -> None:
    info = interpret(f"]d201{GTIN}10LOT9")
    seen: list[tuple[str, str | None, str | None]] = []

    def find(gtin: str, lot: str | None, serial: str | None) -> dict[str, Any]:
        seen.append((gtin, lot, serial))
        return {"recall_id": "R", "gtin": gtin, "lot": "LOT9"}

    for policy in ("block", "warn", "allow"):
        with pytest.raises(TillRefused) as caught:
            check_item(info, "G", rules("UTC", expiry_policy=policy), "sale", find)
        assert caught.value.code == "recalled"
    assert seen[0] == (GTIN, "LOT9", None)
    with pytest.raises(TillRefused):
        check_item(info, "G", rules("UTC"), "receive", find)
    assert check_item(info, "G", rules("UTC"), "count", find) == []
    assert check_item(info, "G", rules("UTC"), "lookup", find)[0]["code"] == "recalled"


@pytest.mark.parametrize(("code", "expiry", "error"), [
    (f"]d201{GTIN}17251200\x1d10X", dt.date(2025, 12, 31), None),  # day 00: end of month
    (f"]d201{GTIN}17240229\x1d10X", dt.date(2024, 2, 29), None),  # a leap day
    (f"]d201{GTIN}17250229\x1d10X", None, "invalid_gs1"),  # not a leap year
    (f"]d201{GTIN}17251399\x1d10X", None, "invalid_gs1"),  # month 13
    (f"https://id.gs1.org/01/{GTIN}?17=251399", None, "invalid_digital_link"),
])
def test_gs1_dates_read_by_biip(code: str, expiry: dt.date | None, error: str | None) -> None:
    info = interpret(code)
    assert (info.expiry, info.error_code) == (expiry, error)


def test_a_lot_matches_however_the_code_encodes_it() -> None:
    wanted = "A/B-1"
    seen: list[str | None] = []

    def find(gtin: str, lot: str | None, serial: str | None) -> dict[str, Any] | None:
        seen.append(lot)
        return {"recall_id": "R", "gtin": gtin, "lot": wanted} if lot == wanted else None

    for code in (f"]d201{GTIN}10A/B-1", f"(01){GTIN}(10)A/B-1",
                 f"https://id.gs1.org/01/{GTIN}/10/A%2FB-1"):
        with pytest.raises(TillRefused, match="lot A/B-1"):
            check_item(interpret(code), "G", rules("UTC"), "sale", find)
    assert seen == [wanted] * 3
