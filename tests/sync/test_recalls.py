"""The recall command data check shared by central and the store (sync.recalls)."""

from __future__ import annotations

from typing import Any

import pytest

from sync.recalls import RecallInvalid, check_recall


def test_a_lot_recall_is_normalised() -> None:
    data = check_recall("recall.add", {"recall_id": "R-1", "gtin": "9506000134352",
                                       "lot": "AB-12/3", "reason": "listeria"})
    assert data == {"recall_id": "R-1", "gtin": "09506000134352", "lot": "AB-12/3",
                    "reason": "listeria"}
    assert check_recall("recall.add", {"recall_id": "R-2", "gtin": "96385074",
                                       "serial": "SN1"})["gtin"] == "00000096385074"
    assert check_recall("recall.lift", {"recall_id": "R-1", "ignored": 1}) == {
        "recall_id": "R-1"}


@pytest.mark.parametrize(("data", "message"), [
    ({"gtin": "09506000134352", "lot": "A"}, "recall_id"),
    ({"recall_id": "R 1", "gtin": "09506000134352", "lot": "A"}, "recall_id"),
    ({"recall_id": "R", "gtin": "09506000134353", "lot": "A"}, "check digit"),
    ({"recall_id": "R", "gtin": "4111111111111111", "lot": "A"}, "8, 12, 13 or 14"),
    ({"recall_id": "R", "gtin": 9506000134352, "lot": "A"}, "gtin"),
    ({"recall_id": "R", "gtin": "09506000134352"}, "exactly one"),
    ({"recall_id": "R", "gtin": "09506000134352", "lot": "A", "serial": "B"}, "exactly one"),
    ({"recall_id": "R", "gtin": "09506000134352", "lot": ""}, "character set 82"),
    ({"recall_id": "R", "gtin": "09506000134352", "lot": "X" * 21}, "character set 82"),
    ({"recall_id": "R", "gtin": "09506000134352", "lot": "AB\x1dC"}, "character set 82"),
    ({"recall_id": "R", "gtin": "09506000134352", "lot": "été"}, "character set 82"),
    ({"recall_id": "R", "gtin": "09506000134352", "lot": ["A"]}, "character set 82"),
    ({"recall_id": "R", "gtin": "09506000134352", "lot": "A", "reason": "x\n"}, "reason"),
    ("not an object", "object"),
])
def test_malformed_recalls_say_which_field(data: Any, message: str) -> None:
    with pytest.raises(RecallInvalid, match=message):
        check_recall("recall.add", data)


def test_not_a_recall_type() -> None:
    with pytest.raises(RecallInvalid, match="not a recall command"):
        check_recall("recall.other", {"recall_id": "R"})
