"""HTTP routes under ``/v1/visitors`` (the lead includes ``router`` in the app).

The routes find the agent's services with :func:`get_services`, which reads
``request.app.state.services``; an app that keeps them elsewhere overrides it with
``app.dependency_overrides[get_services] = ...``. Every figure is pseudonymous.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from edge_agent.services import AgentServices
from edge_agent.visitors import report
from edge_agent.visitors.engine import ENGINE_EXTRA
from edge_agent.visitors.footfall import local_day_bounds
from sync.errors import WireFormatError
from sync.wire import parse_ts

router = APIRouter(prefix="/v1/visitors", tags=["visitors"])
MAX_RANGE_S = 92 * 86400


def get_services(request: Request) -> AgentServices:
    services: AgentServices = request.app.state.services
    return services


Services = Annotated[AgentServices, Depends(get_services)]


def _tz(services: AgentServices) -> str:
    return services.config.store.timezone


def _live(services: AgentServices) -> dict[str, Any] | None:
    engine = services.extras.get(ENGINE_EXTRA)
    figures = getattr(engine, "figures", None)
    return figures() if callable(figures) else None


@router.get("/today")
async def today(services: Services) -> dict[str, Any]:
    """Visits, visitors, returning visitors, dwell, entries/exits, sales and conversion
    for the store's current local day."""
    tz = _tz(services)
    now = time.time()
    summary = await services.ledger.read(
        lambda conn: report.visitors_today(conn, now=now, timezone=tz))
    summary["live"] = _live(services)
    return summary


@router.get("/periods")
async def periods(
    services: Services,
    day: Annotated[date | None, Query(alias="date", description="local date, default today")]
    = None,
) -> dict[str, Any]:
    """Footfall periods of one local day with visits, sales and conversion per period."""
    zone = ZoneInfo(_tz(services))
    day = day or datetime.now(zone).date()
    start = datetime.combine(day, dtime(0), zone).timestamp()
    end = datetime.combine(day + timedelta(days=1), dtime(0), zone).timestamp()
    period_s = services.config.visitors.footfall_period_s
    rows = await services.ledger.read(lambda conn: report.periods(conn, start, end, period_s))
    return {"date": day.isoformat(), "timezone": _tz(services), "periods": rows}


@router.get("/conversion")
async def conversion(
    services: Services,
    start: Annotated[str | None, Query(alias="from", description="RFC 3339")] = None,
    end: Annotated[str | None, Query(alias="to", description="RFC 3339")] = None,
) -> dict[str, Any]:
    """Sales per visit and per entry over [from, to) (default: today, local)."""
    try:
        if start is None and end is None:
            lo, hi = local_day_bounds(time.time(), _tz(services))
        elif start is not None and end is not None:
            lo, hi = parse_ts(start).timestamp(), parse_ts(end).timestamp()
        else:
            raise HTTPException(422, "give both from and to, or neither")
    except WireFormatError as exc:
        raise HTTPException(422, str(exc)) from exc
    if not 0 < hi - lo <= MAX_RANGE_S:
        raise HTTPException(422, f"to must be after from, by at most {MAX_RANGE_S // 86400} days")
    return await services.ledger.read(lambda conn: report.conversion(conn, lo, hi))
