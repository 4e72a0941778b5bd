"""The demo store's goods: its catalog, opening stock, shoppers' tags, and the seeding of
a new ledger, so ``edge_agent.demo`` sells from the first scan with or without central."""

from __future__ import annotations

from pathlib import Path

from edge_agent import demo_story
from edge_agent.command_apply import normalise_gtin
from edge_agent.ledger import Ledger, Tx

STORE = "DEMO1"
DEMO_CATALOG = [
    {"sku": "COFFEE-1KG", "name": "Coffee beans 1 kg", "gtins": ["5901234123457"],
     "price": "14.90", "currency": "EUR", "uom": "unit", "active": True},
    {"sku": "TEA-GREEN", "name": "Green tea 100 g", "gtins": ["4006381333931"],
     "price": "4.50", "currency": "EUR", "uom": "unit", "active": True},
    {"sku": "SODA-330", "name": "Soda can 330 ml", "gtins": ["036000291452"],
     "price": "1.20", "currency": "EUR", "uom": "unit", "active": True},
    {"sku": "GUM-MINT", "name": "Mint gum", "gtins": ["96385074"],
     "price": "0.99", "currency": "EUR", "uom": "unit", "active": True},
]
GTIN_OF = {str(item["sku"]): str(item["gtins"][0]) for item in DEMO_CATALOG}  # type: ignore[index]
SCANNABLE = list(GTIN_OF.values())
OPENING_STOCK = 20
LOW_STOCK = 5  # at or below: the back room receives a delivery
DELIVERY = 12
# Loyalty-card tags of the regular shoppers: each comes back only after a while, so a
# visit closes (visitors.absence_gap_s in config/demo.toml) and is recorded.
TAGS = [f"{n:010X}" for n in range(0x0A1B2C3D40, 0x0A1B2C3D40 + 12)]
demo_story.NAMES.update({str(item["sku"]): str(item["name"]) for item in DEMO_CATALOG})


def seed_ledger(path: Path, opening: int = OPENING_STOCK) -> bool:
    """A new store database gets the demo catalog and an opening delivery, once.

    The catalog is what central would send (PROTOCOL §5.1 ``catalog.upsert``), written
    here so the store sells before it has ever reached central; the opening stock is an
    ordinary ``receipt`` fact, sent to central like any other. An existing database is
    left alone, so a restart never adds another opening stock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with Ledger.open(path, STORE) as ledger:
        if not ledger.is_new:
            return False

        def op(tx: Tx) -> None:
            for item in DEMO_CATALOG:
                tx.execute("INSERT OR REPLACE INTO catalog (sku, name, price, currency, uom, "
                           "active) VALUES (?, ?, ?, ?, ?, 1)",
                           (item["sku"], item["name"], item["price"], item["currency"],
                            item["uom"]))
                tx.execute("INSERT OR REPLACE INTO catalog_gtins (gtin, sku) VALUES (?, ?)",
                           (normalise_gtin(GTIN_OF[str(item["sku"])]), item["sku"]))
            lines = [(str(item["sku"]), opening) for item in DEMO_CATALOG]
            tx.append("receipt", {"lines": [{"sku": s, "qty": q} for s, q in lines],
                                  "ref": "DEMO-OPENING"}, stock=lines)

        ledger.write_blocking(op)
    return True
