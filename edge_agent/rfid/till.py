"""Tags read at a till: a UHF reader with ``mode = "sale"`` adds each tagged item to its
terminal's basket, and the checkout's sale records the item's serial.

The basket's tag rows (``rfid_basket_tags``) sit beside ``basket_lines`` (one per line,
keyed by line number); the service calls :func:`add_tag` inside the same transaction
that adds the line and :func:`tagged_lines` inside the checkout's. A tag already in the
basket (it left the reader's field and came back) is not added twice, nor one already
sold. Rows of cancelled baskets are removed by the RFID retention pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from edge_agent.errors import OperationError
from edge_agent.ledger import Tx
from edge_agent.retail import ops
from edge_agent.rfid.serials import parse_epc

__all__ = ["add_tag", "tagged_lines"]


def add_tag(tx: Tx, basket_id: str, line_no: int, epc: str) -> None:
    """Remember the tag of a new basket line (``tag_in_basket`` if it is already there)."""
    if tx.query("SELECT 1 FROM rfid_basket_tags WHERE basket_id = ? AND epc = ?",
                (basket_id, epc)):
        raise OperationError("tag_in_basket", "this tag is already in the basket", status=409)
    if tx.query("SELECT 1 FROM rfid_sold WHERE epc = ? AND returned_at IS NULL", (epc,)):
        # A shopper's bag near the till: an item this store already sold.
        raise OperationError("tag_sold", "this tagged item is already sold (return it first)",
                             status=409)
    tx.execute("INSERT INTO rfid_basket_tags (basket_id, line_no, epc) VALUES (?, ?, ?)",
               (basket_id, line_no, epc))


def tagged_lines(tx: Tx, basket_id: str, view_lines: Sequence[Mapping[str, Any]],
                 lines: Sequence[ops.PricedLine]) -> list[ops.PricedLine]:
    """``lines`` (in the order of ``view_lines``) with the EPC and serial of tagged ones;
    the basket's tag rows are deleted (the checkout deletes its lines)."""
    tags = {int(r[0]): str(r[1]) for r in tx.query(
        "SELECT line_no, epc FROM rfid_basket_tags WHERE basket_id = ?", (basket_id,))}
    if not tags:
        return list(lines)
    tx.execute("DELETE FROM rfid_basket_tags WHERE basket_id = ?", (basket_id,))
    out = []
    for view, line in zip(view_lines, lines, strict=True):
        epc = tags.get(int(view["line_no"]))
        if epc is None:
            out.append(line)
            continue
        tag = parse_epc(epc, f"basket line {view['line_no']}")
        out.append(dataclasses.replace(line, epc=tag.epc, serial=tag.serial))
    return out
