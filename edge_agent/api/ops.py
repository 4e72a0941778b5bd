"""Routes for the technician and monitoring: status, devices, the outbox, sync requests,
Prometheus metrics, and the live event stream (server-sent events)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, StringConstraints

from edge_agent.api.metrics import Metrics, refresh_metrics
from edge_agent.api.params import Services
from edge_agent.api.queries import epoch_marks, pending_events, resync_needed
from edge_agent.errors import OperationError
from edge_agent.retail.requests import FreeText
from edge_agent.services import AgentServices, SyncControl
from sync.errors import WireFormatError
from sync.wire import parse_ts, utc_now

SSE_KEEPALIVE_S = 15.0

events_router = APIRouter()
router = APIRouter()


class ResyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: Annotated[FreeText, StringConstraints(min_length=1)] = "requested via API"


# -- live events ------------------------------------------------------------------------------
@events_router.get("/v1/events/stream", tags=["events"],
                   response_class=StreamingResponse,
                   responses={200: {"content": {"text/event-stream": {}}}})
async def get_events(
    services: Services,
    topics: Annotated[str | None, Query(max_length=200,
                                        description="comma-separated, e.g. scan,tag,device"
                                        )] = None,
) -> StreamingResponse:
    """Server-sent events: `event: <topic>` and `data: <json>` per item; a comment
    line every 15 s keeps proxies and clients from timing out. Topics: scan,
    scan_rejected, basket, session, lookup, device, tag, door, presence, rejected, and
    one per committed write (sale, checkout, return, receipt, adjustment, count,
    transfer, fulfilment, session.close: ids, totals, units, alert kinds) ...
    (all when `topics` is omitted)."""
    wanted = {t.strip() for t in topics.split(",") if t.strip()} if topics else None
    return StreamingResponse(_sse(services, wanted), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache",
                                      "X-Accel-Buffering": "no"})


# -- status and ops ---------------------------------------------------------------------------
@router.get("/v1/status", tags=["ops"])
async def get_status(services: Services) -> dict[str, Any]:
    return await _status(services)


@router.get("/v1/devices", tags=["ops"])
async def get_devices(services: Services) -> dict[str, Any]:
    return _devices(services)


@router.get("/v1/outbox", tags=["ops"])
async def get_outbox(services: Services,
                     limit: Annotated[int, Query(ge=0, le=1000)] = 20) -> dict[str, Any]:
    return await _outbox(services, limit)


@router.post("/v1/sync/now", status_code=202, tags=["ops"])
async def post_sync_now(services: Services) -> dict[str, Any]:
    sync = _sync(services)
    sync.request_sync_now()
    return {"requested": "sync_now"}


@router.post("/v1/sync/resync", status_code=202, tags=["ops"])
async def post_resync(services: Services, body: ResyncRequest | None = None) -> dict[str, Any]:
    sync = _sync(services)
    reason = body.reason if body is not None else "requested via API"
    sync.request_resync(reason)
    return {"requested": "resync", "reason": reason}


@router.get("/metrics", tags=["ops"], response_class=Response)
async def get_metrics(request: Request, services: Services) -> Response:
    metrics: Metrics = request.app.state.metrics
    await refresh_metrics(services, metrics)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _sync(services: AgentServices) -> SyncControl:
    if services.sync is None:
        raise OperationError("sync_not_configured", "sync with central is not running on "
                             "this agent", status=503)
    return services.sync


async def _sse(services: AgentServices, topics: set[str] | None) -> AsyncIterator[bytes]:
    async with services.hub.subscribe(topics) as queue:
        yield b": connected\n\n"
        while True:
            try:
                topic, data = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            body = orjson.dumps(data, default=str)
            yield b"event: " + topic.encode() + b"\ndata: " + body + b"\n\n"


def _devices(services: AgentServices) -> dict[str, Any]:
    items = [dataclasses.asdict(status) for status in services.device_statuses.values()]
    return {"connected": sum(1 for i in items if i["state"] == "connected"),
            "total": max(len(items), len(services.config.devices)), "items": items}


async def _status(services: AgentServices) -> dict[str, Any]:
    ledger = services.ledger
    stats = await ledger.stats()
    resync = await ledger.read(resync_needed)
    figures: dict[str, Any] = {}
    if services.sync is not None:
        figures = services.sync.figures()
    oldest_age = None
    if stats.outbox_oldest_ts is not None:
        try:
            oldest_age = max(0.0, round((utc_now() - parse_ts(stats.outbox_oldest_ts))
                                        .total_seconds(), 3))
        except WireFormatError:
            oldest_age = None
    try:
        free = shutil.disk_usage(ledger.path.parent).free
    except OSError:
        free = None
    return {
        "state": services.state,
        "version": services.version,
        "store": services.config.store.id,
        "uptime_s": services.uptime_s,
        "boot_id": services.boot_id,
        "epoch": stats.epoch,
        "last_seq": stats.last_seq,
        "applied_cseq": stats.applied_cseq,
        "resync_needed": resync,
        "broker": {
            "connected": bool(services.sync.connected) if services.sync is not None else False,
            "last_ack_at": figures.get("last_ack_at"),
            "reconnects": figures.get("reconnects", 0),
            "stalled_s": figures.get("stalled_s", 0.0),
            "last_error": figures.get("last_error"),
        },
        "outbox": {"pending": stats.outbox_pending, "oldest_ts": stats.outbox_oldest_ts,
                   "oldest_age_s": oldest_age},
        "devices": _devices(services),
        "clock_offset_ms": figures.get("clock_offset_ms"),
        "db": {"bytes": stats.db_bytes, "wal_bytes": stats.wal_bytes, "disk_free_bytes": free},
        "counters": dict(services.counters),
    }


async def _outbox(services: AgentServices, limit: int) -> dict[str, Any]:
    stats = await services.ledger.stats()
    events = await services.ledger.read(lambda conn: pending_events(conn, limit))
    epochs = await services.ledger.read(epoch_marks)
    return {"pending": stats.outbox_pending, "oldest_ts": stats.outbox_oldest_ts,
            "epochs": epochs, "events": events}
