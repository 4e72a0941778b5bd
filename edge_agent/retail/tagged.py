"""Sale and return lines that carry an item's RFID tag (EPC): each names one serialised
item, whose tag's GTIN must be the line's item. Pure checks over a catalog view; the
service records the serials (``edge_agent.rfid.store``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from edge_agent.errors import OperationError
from edge_agent.retail import ops
from edge_agent.retail.catalog import CatalogView
from edge_agent.retail.requests import SaleLineIn
from edge_agent.rfid.serials import SoldTag, parse_epc

__all__ = ["check_return_tags", "serialise_lines", "tag_item"]


def tag_item(view: CatalogView, epc: str, where: str) -> tuple[SoldTag, ops.CatalogItem]:
    """The tag and the catalog item its GTIN names (``invalid_epc``, ``unknown_sku``)."""
    tag = parse_epc(epc, where)
    sku = view.sku_for_gtin(tag.gtin)
    item = view.item(sku) if sku is not None else None
    if item is None:
        raise OperationError("unknown_sku", f"{where}: no catalog item for the tag's GTIN "
                             f"{tag.gtin}", status=422)
    return tag, item


def _same_item(view: CatalogView, tag: SoldTag, sku: str, where: str) -> None:
    tag_sku = view.sku_for_gtin(tag.gtin)
    if tag_sku != sku:
        raise OperationError("epc_mismatch", f"{where}: the tag's GTIN {tag.gtin} is "
                             f"{tag_sku or 'not in the catalog'}, not {sku}", status=422)


def serialise_lines(view: CatalogView, lines_in: Sequence[SaleLineIn],
                    priced: Sequence[ops.PricedLine]) -> list[ops.PricedLine]:
    """``priced`` with each tagged line's EPC and serial; one EPC per sale."""
    out: list[ops.PricedLine] = []
    seen: set[str] = set()
    for index, (line_in, line) in enumerate(zip(lines_in, priced, strict=True)):
        if line_in.epc is None:
            out.append(line)
            continue
        where = f"lines[{index}]"
        tag = parse_epc(line_in.epc, where)
        if tag.epc in seen:
            raise OperationError("duplicate_epc", f"{where}: this tag is already in the sale",
                                 status=422)
        seen.add(tag.epc)
        _same_item(view, tag, line.sku, where)
        out.append(dataclasses.replace(line, qty=1, gtin=tag.gtin, epc=tag.epc,
                                       serial=tag.serial))
    return out


def check_return_tags(view: CatalogView, lines: Sequence[ops.ReturnLine],
                      tags: Mapping[int, SoldTag]) -> None:
    seen: set[str] = set()
    for index, tag in tags.items():
        where = f"lines[{index}]"
        if tag.epc in seen:
            raise OperationError("duplicate_epc", f"{where}: this tag is already in the return",
                                 status=422)
        seen.add(tag.epc)
        _same_item(view, tag, lines[index].sku, where)
