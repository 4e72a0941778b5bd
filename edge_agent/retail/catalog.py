"""The store's catalog as the barcode resolver sees it, over any query function (a
:class:`~edge_agent.ledger.Tx` inside a write, or a read-only connection)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from drivers.barcode import BarcodeInfo, interpret, resolve
from drivers.carddata import is_card_data
from edge_agent.errors import OperationError
from edge_agent.retail.ops import CatalogItem
from edge_agent.retail.recalls import find_recall
from edge_agent.retail.requests import CARD_DATA_MESSAGE
from edge_agent.retail.till import Purpose, TillRules, check_item

if TYPE_CHECKING:
    from drivers.barcode import RcnRegion

QueryFn = Callable[[str, Sequence[Any]], list[sqlite3.Row]]


def conn_query(conn: sqlite3.Connection) -> QueryFn:
    def query(sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        return list(conn.execute(sql, tuple(params)).fetchall())

    return query


class CatalogView:
    """Implements :class:`drivers.barcode.CatalogLookup`, plus item rows."""

    def __init__(self, query: QueryFn) -> None:
        self._query = query
        self._items: dict[str, CatalogItem | None] = {}

    def prefetch(self, skus: Sequence[str]) -> None:
        """Load these SKUs' rows in one query (a sale's lines), for :meth:`item`."""
        wanted = [sku for sku in dict.fromkeys(skus) if sku not in self._items]
        if not wanted:
            return
        marks = ",".join("?" * len(wanted))
        rows = self._query(f"SELECT sku, name, price, currency, uom, active FROM catalog "
                           f"WHERE sku IN ({marks})", wanted)
        for sku in wanted:
            self._items[sku] = None
        for row in rows:
            self._items[str(row["sku"])] = _item(row)

    def query(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        return self._query(sql, params)

    def sku_for_gtin(self, gtin14: str) -> str | None:
        rows = self._query("SELECT sku FROM catalog_gtins WHERE gtin = ?", (gtin14,))
        return str(rows[0][0]) if rows else None

    def has_sku(self, code: str) -> bool:
        return bool(self._query("SELECT 1 FROM catalog WHERE sku = ?", (code,)))

    def sku_for_alias(self, code: str) -> str | None:
        rows = self._query("SELECT sku FROM catalog_aliases WHERE alias = ?", (code,))
        return str(rows[0][0]) if rows else None

    def is_known_gtin(self, gtin14: str) -> bool:
        return self.sku_for_gtin(gtin14) is not None

    def item(self, sku: str) -> CatalogItem | None:
        if sku in self._items:
            return self._items[sku]
        rows = self._query(
            "SELECT sku, name, price, currency, uom, active FROM catalog WHERE sku = ?", (sku,)
        )
        found = _item(rows[0]) if rows else None
        self._items[sku] = found
        return found


def _item(row: sqlite3.Row) -> CatalogItem:
    try:
        price = Decimal(str(row["price"]))
    except InvalidOperation:
        raise OperationError("catalog_invalid", f"{row['sku']}: the catalog price is not a "
                             "decimal", status=500) from None
    return CatalogItem(str(row["sku"]), str(row["name"]), price, str(row["currency"]),
                       str(row["uom"]), bool(row["active"]))


@dataclass(frozen=True, slots=True)
class ScannedItem:
    """A code resolved to a catalog item, with what a variable-measure barcode carries."""

    item: CatalogItem
    info: BarcodeInfo
    via: str
    qty: int | None  # from a weight barcode, in the SKU's unit of measure
    line_total: Decimal | None  # from a price barcode
    notices: tuple[dict[str, Any], ...] = ()  # expiry warnings, markdowns (edge_agent.till)

    @property
    def gtin(self) -> str | None:
        return self.info.gtin if self.via == "gtin" else None


def scan_code(view: CatalogView, code: str, rules: TillRules | RcnRegion | str | None,
              purpose: Purpose = "sale") -> ScannedItem:
    """Resolve a scanned or typed code: the one path of every scanner mode, basket, session
    and API field that takes a code.  OperationError ``card_data_rejected``,
    ``invalid_barcode`` (a GTIN, GS1 element string or Digital Link that does not read),
    ``unknown_sku``; :class:`~edge_agent.retail.till.TillRefused` ``recalled``, ``expired``,
    ``best_before_passed``."""
    if not isinstance(rules, TillRules):
        rules = TillRules(region=rules)
    if is_card_data(code):
        raise OperationError("card_data_rejected", CARD_DATA_MESSAGE, status=422)
    info = interpret(code, rules.region, rules.layouts)
    found = resolve(info, view)
    item = view.item(found.sku) if found.sku is not None else None
    if item is None:
        if info.error_code is not None:
            raise OperationError("invalid_barcode", f"the code does not read as a barcode "
                                 f"({info.error_code}): {info.error}", status=422)
        reason = found.reason or "unknown_code"
        raise OperationError("unknown_sku", f"no catalog item for code {info.raw!r} ({reason})",
                             status=422)
    notices = check_item(info, item.sku, rules, purpose,
                         lambda gtin, lot, serial: find_recall(view.query, gtin, lot, serial))
    qty: int | None = None
    total: Decimal | None = None
    if info.weight_g is not None and item.uom == "g":
        qty = max(1, info.weight_g)
    if info.price is not None:
        total = info.price
        if item.uom != "unit" and item.price > 0:
            qty = max(1, int((info.price / item.price).to_integral_value()))
        elif qty is None:
            qty = 1
    return ScannedItem(item, info, found.via or "sku", qty, total, tuple(notices))


def read_known_gtins(conn: sqlite3.Connection) -> frozenset[str]:
    """Every catalog GTIN (14 digits).  The card filter no longer needs it (a valid GTIN
    is never card data); kept for callers that list the catalog's codes."""
    return frozenset(str(r[0]) for r in conn.execute("SELECT gtin FROM catalog_gtins"))
