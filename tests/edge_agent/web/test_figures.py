"""The store page's figures on a real ledger file: the hour grid across a DST change,
sales by hour against last week, top SKUs, recent alerts newest first."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import orjson

from edge_agent.ledger import Tx
from edge_agent.retail import ops
from edge_agent.web import charts, figures
from tests.edge_agent.retail.seed import seeded_ledger


def test_hour_grid_follows_the_local_day_across_dst() -> None:
    normal = figures.hour_grid(date(2026, 3, 28), "Europe/Stockholm")
    spring = figures.hour_grid(date(2026, 3, 29), "Europe/Stockholm")  # 02:00 -> 03:00
    autumn = figures.hour_grid(date(2026, 10, 25), "Europe/Stockholm")  # 03:00 -> 02:00
    assert len(normal.starts) == 24
    assert len(spring.starts) == 23
    assert "02:00" not in spring.labels
    assert len(autumn.starts) == 25
    assert autumn.labels.count("02:00") == 2
    assert normal.labels[0] == "00:00"
    assert normal.end - normal.start == 86400


def _sale(tx: Tx, sale_id: str, ts: str, lines: list[tuple[str, int, str]]) -> None:
    priced = [ops.PricedLine(sku, qty, Decimal(price)) for sku, qty, price in lines]
    total = sum((Decimal(p) * q for _, q, p in lines), Decimal(0))
    fact = ops.sale_fact(sale_id, "T1", priced, [("cash", total)], currency="EUR")
    event = tx.append(fact.type, fact.data, stock=fact.stock, ts=ts)
    tx.execute("INSERT INTO sales (sale_id, epoch, seq, ts, terminal, total, currency, "
               "customer, lines) VALUES (?, ?, ?, ?, 'T1', ?, 'EUR', NULL, ?)",
               (sale_id, tx.epoch, event.seq, ts, fact.data["total"],
                orjson.dumps(fact.data["lines"]).decode()))


def test_sales_by_hour_against_last_week_top_skus_and_alerts(tmp_path: Path) -> None:
    with seeded_ledger(tmp_path / "ledger.db") as ledger:
        def seed(tx: Tx) -> None:
            # Stockholm is UTC+1 in November: 08:30Z is 09:30 local
            _sale(tx, "s1", "2026-11-20T08:30:00.000Z", [("A-100", 2, "2.50")])
            _sale(tx, "s2", "2026-11-20T08:59:59.999Z", [("B-200", 1, "1.99"),
                                                         ("A-100", 1, "2.50")])
            _sale(tx, "s3", "2026-11-20T13:00:00.000Z", [("C-300", 4, "0.35")])
            _sale(tx, "edge", "2026-11-19T22:59:59.999Z", [("C-300", 9, "0.35")])  # 23:59
            _sale(tx, "lw", "2026-11-13T08:10:00.000Z", [("A-100", 7, "2.50")])
            tx.append("alert", {"kind": "oversold", "sale_id": "s1", "skus": []})
            tx.append("alert", {"kind": "command_quarantined", "cseq": 3, "reason": "bad"})

        ledger.write_blocking(seed)
        data = ledger.read_blocking(
            lambda conn: figures.sales_by_hour(conn, date(2026, 11, 20), "Europe/Stockholm"))
        busy = {h["hour"]: (h["sales"], h["units"], h["revenue"], h["last_week_units"])
                for h in data["hours"] if h["sales"] or h["last_week_sales"]}
        assert busy == {"09:00": (2, 4, "9.49", 7), "14:00": (1, 4, "1.40", 0)}
        assert data["totals"] == {"sales": 3, "units": 8, "revenue": "10.89",
                                  "last_week_sales": 1, "last_week_units": 7,
                                  "last_week_revenue": "17.50"}
        assert data["compared_with"] == "2026-11-13"
        grid = figures.hour_grid(date(2026, 11, 20), "Europe/Stockholm")
        top = ledger.read_blocking(lambda conn: figures.top_skus(conn, grid.start, grid.end))
        assert [(t["sku"], t["units"], t["revenue"], t["name"]) for t in top] == [
            ("C-300", 4, "1.40", "Chocolate"), ("A-100", 3, "7.50", "Apple juice 1l"),
            ("B-200", 1, "1.99", "Rye bread")]  # the 23:59 sale of the day before is out
        alerts = ledger.read_blocking(lambda conn: figures.recent_alerts(conn, limit=5))
        assert [a["kind"] for a in alerts] == ["command_quarantined", "oversold"]
        assert alerts[0]["detail"] == {"cseq": 3, "reason": "bad"}
        svg = charts.sales_chart(data)
        # pygal's tooltip script (from the web) is left out; its inline config stays inert
        assert re.search(r"<script[^>]*(src|href)=", svg) is None
        assert re.findall(r'(?:src|href)="(https?:[^"]*)"', svg) == []
        assert '<desc class="value">4</desc>' in svg


def test_footfall_by_local_hour_in_a_half_hour_zone(tmp_path: Path) -> None:
    """Kolkata is UTC+5:30: local 09:00-10:00 is 03:30-04:30 UTC, across two UTC hours."""
    day = date(2026, 11, 20)
    at = datetime(2026, 11, 20, 3, 30, tzinfo=UTC).timestamp()  # 09:00 local
    with seeded_ledger(tmp_path / "ledger.db") as ledger:
        def seed(tx: Tx) -> None:
            for offset, entries in ((0, 3), (900, 2), (1800, 4), (2700, 1), (3600, 7)):
                tx.execute("INSERT INTO footfall (door, period_start, period_s, entries, "
                           "exits) VALUES ('front', ?, 900, ?, 0)", (int(at) + offset, entries))
            for n, offset in enumerate((60, 2000, 3700)):
                tx.execute("INSERT INTO visits (visit_id, visitor, source, zone, device, "
                           "entered_at, left_at, dwell_s) VALUES (?, ?, 'ble', 'z', 'd', ?, ?, "
                           "60)", (f"v{n}", f"p{n}", at + offset, at + offset + 60))
            _sale(tx, "k1", "2026-11-20T04:10:00.000Z", [("A-100", 1, "2.50")])  # 09:40

        ledger.write_blocking(seed)
        data = ledger.read_blocking(
            lambda conn: figures.footfall_by_hour(conn, day, "Asia/Kolkata"))
    busy = {h["hour"]: (h["entries"], h["visits"], h["sales"], h["conversion"])
            for h in data["hours"] if h["entries"] or h["visits"] or h["sales"]}
    assert busy == {"09:00": (10, 2, 1, 0.5), "10:00": (7, 1, 0, 0.0)}
    assert data["hours"][0]["hour"] == "00:00"
    assert len(data["hours"]) == 24
    assert data["totals"] == {"entries": 17, "visits": 3, "sales": 1, "conversion": 0.3333}
