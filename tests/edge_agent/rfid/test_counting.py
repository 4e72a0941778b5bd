"""The pure rules of RFID counts: control barcodes and zone checks."""

from __future__ import annotations

import pytest

from edge_agent.config import RfidSection
from edge_agent.errors import OperationError
from edge_agent.rfid.counting import check_zones, control_action


@pytest.mark.parametrize(("code", "expected"), [
    ("CTL-RFID-COUNT", ("open", None)),
    (" CTL-RFID-COUNT:shoes ", ("open", "shoes")),
    ("CTL-RFID-COUNT:", ("open", None)),
    ("CTL-RFID-CLOSE", ("close", None)),
    ("CTL-RFID-CANCEL", ("cancel", None)),
    ("CTL-RFID-COUNTX", None),
    ("4006381333931", None),
])
def test_control_barcodes_name_their_action(code: str,
                                            expected: tuple[str, str | None] | None) -> None:
    assert control_action(RfidSection(), code) == expected


def test_zones_are_checked_against_the_inventory_readers() -> None:
    assert check_zones(["a", "b"], None) is None
    assert check_zones(["a", "b"], ["b"]) == frozenset({"b"})
    with pytest.raises(OperationError) as unknown:
        check_zones(["a"], ["a", "z"])
    assert unknown.value.code == "unknown_zone"
    with pytest.raises(OperationError) as none:
        check_zones([], None)
    assert none.value.code == "no_inventory_readers"
