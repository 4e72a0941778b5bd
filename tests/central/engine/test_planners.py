"""The command planners' table (``central.engine.planners``) through the real engine on a
SQLite file: every command type has its planner, the core types are planned by their own,
and a spec of no known type is refused with nothing issued."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from central.core import Core
from central.customer_registry import COMMAND_TYPES as CUSTOMER_COMMANDS
from central.engine import planners
from central.engine.planners import PLANNERS
from central.errors import InvalidCommandError
from central.order_commands import ORDER_COMMANDS
from sync.recalls import RECALL_TYPES

CORE_TYPES = {"stock.adjust", "catalog.upsert", "catalog.remove", "reservation.create",
              "reservation.cancel", "count.request", "resync"}


def test_every_command_type_has_its_planner() -> None:
    assert set(PLANNERS) == CORE_TYPES | RECALL_TYPES | CUSTOMER_COMMANDS | ORDER_COMMANDS
    extension_planners = {PLANNERS[t] for t in RECALL_TYPES | CUSTOMER_COMMANDS
                          | ORDER_COMMANDS}
    assert not extension_planners & {PLANNERS[t] for t in CORE_TYPES}


@pytest.mark.parametrize("kind", [None, "stock.nudge", ["resync"], {"t": 1}, 7])
def test_a_spec_of_no_known_type_is_refused_and_nothing_issued(core: Core, kind: Any) -> None:
    with pytest.raises(InvalidCommandError, match="unknown command type"):
        core.issue("S001", [{"type": "resync"}, {"type": kind}])
    assert core.conn.execute("SELECT COUNT(*) FROM commands") == [(0,)]
    assert core.stores["S001"].issued == 0


def test_planned_commands_carry_their_lines_into_the_stock(core: Core) -> None:
    issued, _ = core.issue("S001", [
        {"type": "stock.adjust", "data": {"reason": "recount"},
         "stock": [{"sku": "A", "delta": 5}]},
        {"type": "reservation.create", "data": {"reservation_id": "R1", "order_ref": "O1",
                                                "lines": [{"sku": "A", "qty": 2}]}},
        {"type": "catalog.remove", "data": {"skus": ["B"]}},
        {"type": "resync", "data": {"ignored": True}},
    ])
    assert [(c["cseq"], c["type"]) for c in issued] == [
        (1, "stock.adjust"), (2, "reservation.create"), (3, "catalog.remove"), (4, "resync")]
    assert core.exact_sku("A") == {"S001": (5, 2)}
    bodies = [orjson.loads(b) for (b,) in core.conn.execute(
        "SELECT body FROM commands ORDER BY cseq")]
    assert bodies[1]["data"] == {"reservation_id": "R1", "order_ref": "O1",
                                 "lines": [{"sku": "A", "qty": 2}], "expires_at": None}
    assert bodies[3]["data"] == {}
    assert core.stores["S001"].last_resync_cseq == 4


@pytest.mark.parametrize(("spec", "message"), [
    ({"type": "stock.adjust", "data": {"reason": "x"}, "stock": []}, "needs a reason"),
    ({"type": "catalog.upsert", "data": {"items": []}}, "needs items"),
    ({"type": "catalog.remove", "data": {"skus": ["not a sku!"]}}, "valid SKUs"),
    ({"type": "count.request", "data": {"count_id": "C1", "skus": []}}, "valid SKUs"),
    ({"type": "reservation.cancel", "data": {"reservation_id": "nope"}}, "no reservation"),
])
def test_each_planner_refuses_its_own_bad_spec(core: Core, spec: dict[str, Any],
                                                message: str) -> None:
    with pytest.raises(InvalidCommandError, match=message):
        core.issue("S001", [spec])
    assert core.conn.execute("SELECT COUNT(*) FROM commands") == [(0,)]


def test_a_duplicate_reservation_is_refused_by_its_planner(core: Core) -> None:
    spec = {"type": "reservation.create", "data": {
        "reservation_id": "R1", "order_ref": "O1", "lines": [{"sku": "A", "qty": 1}]}}
    core.issue("S001", [spec])
    with pytest.raises(InvalidCommandError, match="already exists"):
        planners.plan(core.conn, "S001", spec, "2026-01-01T00:00:00Z")
