"""What the pages cost the store: the live publish added to every committed sale, and the
store page's figures and chart for a busy day.

    .venv/bin/python -m bench.pages [--quick]

Measured in one run, on a real ledger file:
- the live summary each committed write publishes on the event hub (one page listening),
  per sale, beside the in-process sale it rides on (``RetailService.sale``, group commit):
  the publish should be a rounding error of the sale;
- ``/v1/dashboard``'s reads (sales by hour and last week, footfall, top SKUs, alerts) for
  a day of ``sales`` sales, beside the ceiling: one bare fetch of the same day's rows;
- the pygal chart of that day, beside the JSON of the same figures (what a page drawing
  its own chart in the browser would be sent instead).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from bench.common import Row, best_of
from edge_agent.config import StoreSection
from edge_agent.hub import EventHub
from edge_agent.ledger import Ledger, Tx
from edge_agent.retail import RetailService, ops
from edge_agent.retail.base import live_summary
from edge_agent.retail.requests import SaleRequest
from edge_agent.visitors.store import iso
from edge_agent.web import charts, figures

DAY = date(2026, 11, 20)
TZ = "Europe/Stockholm"
SKUS = [f"SKU-{i:04d}" for i in range(200)]


def _catalog(tx: Tx) -> None:
    tx.executemany("INSERT INTO catalog (sku, name, price, currency) VALUES (?, ?, '2.50', "
                   "'EUR')", [(s, f"item {s}") for s in SKUS])


def _busy_day(ledger: Ledger, sales: int) -> None:
    """``sales`` sales spread over the opening hours of DAY and of a week before."""
    zone = ZoneInfo(TZ)
    opens = datetime(DAY.year, DAY.month, DAY.day, 8, tzinfo=zone).timestamp()

    def write(tx: Tx) -> None:
        for n in range(sales):
            for offset, prefix in ((0, "d"), (7 * 86400, "w")):
                ts = iso(opens - offset + n * (12 * 3600 / sales))
                lines = [ops.PricedLine(SKUS[(n * 7 + k) % len(SKUS)], 1 + k, Decimal("2.50"))
                         for k in range(3)]
                fact = ops.sale_fact(f"{prefix}{n}", "T1", lines, [("cash", Decimal(15))],
                                     currency="EUR")
                event = tx.append(fact.type, fact.data, stock=fact.stock, ts=ts)
                tx.execute("INSERT INTO sales (sale_id, epoch, seq, ts, terminal, total, "
                           "currency, lines) VALUES (?, ?, ?, ?, 'T1', ?, 'EUR', ?)",
                           (f"{prefix}{n}", tx.epoch, event.seq, ts, fact.data["total"],
                            orjson.dumps(fact.data["lines"]).decode()))

    ledger.write_blocking(write)


async def _sale_cost(ledger: Ledger, sales: int) -> tuple[float, float]:
    """(seconds per in-process sale, seconds per live summary + publish)."""
    hub = EventHub()
    retail = RetailService(ledger, StoreSection(id="S001", currency="EUR", timezone=TZ),
                           hub=hub)
    requests = [SaleRequest.model_validate({
        "terminal": "T1", "lines": [{"sku": SKUS[n % len(SKUS)], "qty": 1}],
        "payments": [{"method": "cash", "amount": "2.50"}]}) for n in range(sales)]
    async with hub.subscribe({"sale"}) as queue:
        started = time.perf_counter()
        results = await asyncio.gather(*(retail.sale(r, idempotency_key=f"b-{i}")
                                          for i, r in enumerate(requests)))
        per_sale = (time.perf_counter() - started) / sales
        while not queue.empty():
            queue.get_nowait()
        bodies = [r.body for r in results]

        def publish_all() -> float:
            """Seconds spent publishing, in chunks the listener's queue holds (a page
            drains it between chunks, outside the timing)."""
            spent = 0.0
            for start in range(0, len(bodies), 500):
                chunk = bodies[start:start + 500]
                t0 = time.perf_counter()
                for body in chunk:
                    hub.publish("sale", live_summary(body))
                spent += time.perf_counter() - t0
                while not queue.empty():
                    queue.get_nowait()
            return spent

        publish_s = min(publish_all() for _ in range(5))
    return per_sale, publish_s / sales


def run(quick: bool = False, tiny: bool = False) -> dict[str, Any]:
    day_sales = 300 if tiny else 2_000 if quick else 10_000
    live_sales = 200 if tiny else 1_000 if quick else 3_000
    repeat = 3 if tiny else 5
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        ledger = Ledger.open(Path(tmp) / "ledger.db", "S001")
        try:
            ledger.write_blocking(_catalog)
            per_sale, per_publish = asyncio.run(_sale_cost(ledger, live_sales))
            _busy_day(ledger, day_sales)
            grid = figures.hour_grid(DAY, TZ)

            def dashboard(conn: Any) -> dict[str, Any]:
                return {"sales": figures.sales_by_hour(conn, DAY, TZ),
                        "footfall": figures.footfall_by_hour(conn, DAY, TZ),
                        "top": figures.top_skus(conn, grid.start, grid.end),
                        "alerts": figures.recent_alerts(conn)}

            def bare(conn: Any) -> int:
                return len(conn.execute("SELECT ts, total, lines FROM sales WHERE ts >= ? "
                                        "AND ts < ?", (iso(grid.start), iso(grid.end))
                                        ).fetchall())

            figures_s, data = best_of(lambda: ledger.read_blocking(dashboard), repeat)
            bare_s, rows = best_of(lambda: ledger.read_blocking(bare), repeat)
            chart_s, svg = best_of(lambda: charts.sales_chart(data["sales"]), repeat)
            json_s, blob = best_of(lambda: orjson.dumps(data["sales"]), repeat)
        finally:
            ledger.close()
    assert rows == day_sales  # noqa: S101 - the workload is what it says
    return {"day_sales": day_sales, "live_sales": live_sales,
            "sale_ms": per_sale * 1e3, "publish_us": per_publish * 1e6,
            "publish_share_of_sale": per_publish / per_sale,
            "dashboard_ms": figures_s * 1e3, "bare_day_fetch_ms": bare_s * 1e3,
            "chart_ms": chart_s * 1e3, "chart_bytes": len(svg),
            "json_ms": json_s * 1e3, "json_bytes": len(blob),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def rows(f: dict[str, Any]) -> list[Row]:
    g = "pages"
    return [
        Row(g, "live publish per sale (1 page listening)", f["publish_us"] / 1e3, "ms",
            ceiling=f["sale_ms"], ceiling_name="in-process sale (group commit)",
            target="< 2 % of a sale", met=f["publish_share_of_sale"] < 0.02,
            note="nothing is built when no page or POS listens"),
        Row(g, f"/v1/dashboard reads, {f['day_sales']} sales/day", f["dashboard_ms"], "ms",
            ceiling=f["bare_day_fetch_ms"], ceiling_name="bare fetch of the day's rows",
            target="< 250 ms", met=f["dashboard_ms"] < 250),
        Row(g, "sales chart (pygal SVG)", f["chart_ms"], "ms", ceiling=f["json_ms"],
            ceiling_name="orjson of the same figures",
            note=f"{f['chart_bytes']} B of SVG vs {f['json_bytes']} B of JSON"),
    ]


def main() -> None:
    res = run(quick="--quick" in sys.argv[1:], tiny="--tiny" in sys.argv[1:])
    for row in rows(res):
        ratio = f"{row.ratio:.3g}" if row.ratio is not None else "-"
        print(f"{row.name}: {row.value:.3f} {row.unit}  vs {row.ceiling_name} "
              f"{row.ceiling:.3f} {row.unit}  (ratio {ratio}) {row.target} {row.note}")
    print(f"load average {res['load_average']}")


if __name__ == "__main__":
    main()
