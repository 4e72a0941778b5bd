"""Operator HTTP routes for recalls (admin token, like every operator route):

* ``POST /v1/recalls`` — issue ``recall.add`` to the given stores (default: every store
  this central knows and owns);
* ``DELETE /v1/recalls/{recall_id}`` — issue ``recall.lift`` to every store holding it;
* ``GET /v1/recalls`` — active recalls, the stores holding each (delivered or not), and
  where each was found at a till (``recall.blocked`` events).

Included by :func:`central.api.create_app`; docs/protocol.md "Recalls".
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from central.core import Core, Publish
from central.errors import InvalidCommandError
from central.recalls import active_recalls, recall_overview
from sync.recalls import RECALL_ADD, RECALL_LIFT, RecallInvalid, check_recall

if TYPE_CHECKING:
    from central.service import CentralService


class RecallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gtin: str
    lot: str | None = None
    serial: str | None = None
    reason: str = ""
    recall_id: str | None = None
    stores: list[str] | None = Field(default=None, min_length=1)


def recall_router(service: CentralService) -> APIRouter:
    router = APIRouter()

    def issue_each(stores: list[str], spec: dict[str, Any]) -> list[dict[str, Any]]:
        def job(core: Core) -> tuple[list[dict[str, Any]], list[Publish]]:
            issued: list[dict[str, Any]] = []
            sends: list[Publish] = []
            for store in stores:
                commands, publish = core.issue(store, [spec])
                issued.append({"store": store, "commands": commands})
                sends.extend(publish)
            return issued, sends

        try:
            return service.call(job)
        except InvalidCommandError as exc:
            raise HTTPException(422, str(exc)) from exc

    def known_stores() -> list[str]:
        with service.db.reading() as conn:
            rows = conn.execute("SELECT store FROM stores ORDER BY store")
        return [str(r[0]) for r in rows if service.core.owns(str(r[0]))]

    @router.post("/v1/recalls")
    def post_recall(body: RecallIn) -> dict[str, Any]:
        raw = body.model_dump(exclude={"stores"}, exclude_none=True)
        raw.setdefault("recall_id", f"R-{uuid.uuid4().hex[:12]}")
        try:
            data = check_recall(RECALL_ADD, raw)
        except RecallInvalid as exc:
            raise HTTPException(422, str(exc)) from exc
        stores = body.stores or known_stores()
        if not stores:
            raise HTTPException(422, "no store to send the recall to")
        issued = issue_each(stores, {"type": RECALL_ADD, "data": data})
        return {"recall": data, "issued": issued}

    @router.delete("/v1/recalls/{recall_id}")
    def lift_recall(recall_id: str) -> dict[str, Any]:
        with service.db.reading() as conn:
            holders = sorted({store for store, rid in active_recalls(conn) if rid == recall_id})
        if not holders:
            raise HTTPException(404, f"no active recall {recall_id!r}")
        issued = issue_each(holders, {"type": RECALL_LIFT, "data": {"recall_id": recall_id}})
        return {"recall_id": recall_id, "issued": issued}

    @router.get("/v1/recalls")
    def get_recalls() -> dict[str, Any]:
        with service.db.reading() as conn:
            return {"recalls": recall_overview(conn)}

    return router
