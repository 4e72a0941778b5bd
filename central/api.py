"""HTTP API of the reference central (FastAPI): the store snapshot of PROTOCOL §5.3, plus
the operator endpoints to read state and issue commands.

Store endpoints take the store's own bearer token (another store's token is as wrong as
an unknown one: 401 either way); operator endpoints, ``/docs`` and ``/openapi.json`` always
the admin token, wherever the request comes from. Reads use their own
connection and one consistent transaction; writes go to the single writer.
"""


import hmac
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from central.core import Core, Publish
from central.customer_api import after_snapshot, customers_router
from central.errors import InvalidCommandError
from central.metrics import metrics_router
from central.omni_api import omni_router
from central.pages import router as pages_router
from central.queries import (
    alerts,
    catalog_commands,
    quarantined,
    snapshot,
    stock,
    store_status,
    stores_overview,
)
from central.recall_api import recall_router
from central.session import operator_ok
from pagekit.session import bearer
from sync.wire import STORE_RE

if TYPE_CHECKING:  # the service is handed in by central.main; no import at run time
    from central.service import CentralService


class JSONBytes(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Line(_In):
    sku: str
    delta: int


class AdjustIn(_In):
    lines: list[Line] = Field(min_length=1)
    reason: str = "replenishment"
    ref: str | None = None


class ResLine(_In):
    sku: str
    qty: int


class ReservationIn(_In):
    reservation_id: str | None = None
    order_ref: str
    lines: list[ResLine] = Field(min_length=1)
    expires_at: str | None = None


class CountIn(_In):
    count_id: str | None = None
    skus: list[str] = Field(min_length=1)


class CatalogIn(_In):
    items: list[dict[str, Any]] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class CommandsIn(_In):
    commands: list[dict[str, Any]] = Field(min_length=1)


class ResolveIn(_In):
    epoch: str
    seq: int


def create_app(service: "CentralService") -> FastAPI:
    # The schema is an operator page, behind the admin token (below); /docs is served by
    # central.pages from the installed Swagger UI files (no CDN), behind the same sign-in.
    app = FastAPI(title="edge-central", version="1", default_response_class=JSONBytes,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    db = service.db
    tokens = service.tokens

    def check_store(store: str) -> str:
        if STORE_RE.fullmatch(store) is None:
            raise HTTPException(404, "unknown store")
        return store

    def store_auth(store: str, authorization: Annotated[str | None, Header()] = None) -> str:
        check_store(store)
        given = bearer(authorization)
        unauthorized = HTTPException(401, "missing or invalid token",
                                     headers={"WWW-Authenticate": "Bearer"})
        if given is None:
            raise unauthorized
        expected = tokens.store_token(store)
        if expected is not None and hmac.compare_digest(given, expected):
            return store
        # the same answer for another store's token as for an unknown one: no oracle
        raise unauthorized

    def admin_auth(request: Request) -> None:
        # always a token (the bearer header, or the page's session cookie made from it):
        # where the request comes from (loopback, a proxy) proves nothing
        expected = tokens.admin_token()
        if expected is None or not operator_ok(request, expected):
            raise HTTPException(401, "missing or invalid admin token",
                                headers={"WWW-Authenticate": "Bearer"})

    admin = [Depends(admin_auth)]

    def require_known(store: str) -> None:
        """Commands go to stores central knows: one that has connected, or has a token
        (so a new store can be prepared before its first connection). A typo is refused
        instead of queueing commands for a store that will never exist."""
        if tokens.store_token(store) is not None:
            return
        with db.reading() as conn:
            if conn.execute("SELECT 1 FROM stores WHERE store = ?", (store,)):
                return
        raise HTTPException(404, f"unknown store {store!r}: it has never connected and has "
                                 "no token in http.store_tokens_dir")

    def issue(store: str, specs: list[dict[str, Any]]) -> dict[str, Any]:
        require_known(store)

        def job(core: Core) -> tuple[list[dict[str, Any]], list[Publish]]:
            return core.issue(store, specs)

        try:
            issued = service.call(job)
        except InvalidCommandError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"store": store, "commands": issued}

    @app.get("/openapi.json", dependencies=admin, include_in_schema=False)
    def get_openapi() -> dict[str, Any]:
        return app.openapi()
    app.include_router(omni_router(service, admin))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "mqtt_connected": service.link.connected.is_set()}

    @app.get("/v1/stores/{store}/snapshot")
    def get_snapshot(store: Annotated[str, Depends(store_auth)]) -> dict[str, Any]:
        with db.reading() as conn:
            body = snapshot(conn, store)
        after_snapshot(service, store)  # customers.* commands after the snapshot's cseq
        return body

    @app.get("/v1/status", dependencies=admin)
    def get_status() -> dict[str, Any]:
        c = service.core.counters()
        with db.reading() as conn:
            overview = stores_overview(conn)
        return {"mqtt_connected": service.link.connected.is_set(),
                "counters": {"messages": c.messages, "events_applied": c.events_applied,
                             "events_duplicate": c.events_duplicate,
                             "events_quarantined": c.events_quarantined, "drops": c.drops,
                             "acks": c.acks, "groups": c.groups,
                             "writer_busy_s": round(service.writer.busy_seconds, 3),
                             "writer_publish_s": round(service.writer.publish_seconds, 3),
                             "inbox": service.writer.inbox.qsize(),
                             "inbox_bytes": service.writer.inbox.queued_bytes()},
                "stores": overview}

    @app.get("/v1/stores/{store}", dependencies=admin)
    def get_store(store: Annotated[str, Depends(check_store)]) -> dict[str, Any]:
        with db.reading() as conn:
            status = store_status(conn, store)
        if status is None:
            raise HTTPException(404, "unknown store")
        return status

    @app.get("/v1/stores/{store}/stock", dependencies=admin)
    def get_stock(store: Annotated[str, Depends(check_store)],
                  sku: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
        with db.reading() as conn:
            return {"store": store, "stock": stock(conn, store, sku)}

    @app.get("/v1/alerts", dependencies=admin)
    def get_alerts(store: str | None = None, kind: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
        with db.reading() as conn:
            return {"alerts": alerts(conn, store, kind, limit)}

    @app.get("/v1/stores/{store}/quarantine", dependencies=admin)
    def get_quarantine(store: Annotated[str, Depends(check_store)]) -> dict[str, Any]:
        with db.reading() as conn:
            return {"store": store, "events": quarantined(conn, store)}

    @app.post("/v1/stores/{store}/quarantine/resolve", dependencies=admin)
    def resolve(store: Annotated[str, Depends(check_store)], body: ResolveIn) -> dict[str, Any]:
        def job(core: Core) -> tuple[bool, list[Publish]]:
            return core.resolve_quarantine(store, body.epoch, body.seq), []

        if not service.call(job):
            raise HTTPException(404, "no unresolved quarantined event with that key")
        return {"store": store, "resolved": {"epoch": body.epoch, "seq": body.seq}}

    @app.post("/v1/stores/{store}/commands", dependencies=admin)
    def post_commands(store: Annotated[str, Depends(check_store)],
                      body: CommandsIn) -> dict[str, Any]:
        return issue(store, body.commands)

    @app.post("/v1/stores/{store}/adjust", dependencies=admin)
    def post_adjust(store: Annotated[str, Depends(check_store)], body: AdjustIn
                    ) -> dict[str, Any]:
        data: dict[str, Any] = {"reason": body.reason}
        if body.ref:
            data["ref"] = body.ref
        return issue(store, [{"type": "stock.adjust", "data": data,
                              "stock": [ln.model_dump() for ln in body.lines]}])

    @app.post("/v1/stores/{store}/catalog", dependencies=admin)
    def post_catalog(store: Annotated[str, Depends(check_store)], body: CatalogIn
                     ) -> dict[str, Any]:
        try:
            specs = catalog_commands(body.items, body.remove)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return issue(store, specs)

    @app.post("/v1/stores/{store}/reservations", dependencies=admin)
    def post_reservation(store: Annotated[str, Depends(check_store)], body: ReservationIn
                         ) -> dict[str, Any]:
        data = {"reservation_id": body.reservation_id or str(uuid.uuid4()),
                "order_ref": body.order_ref,
                "lines": [ln.model_dump() for ln in body.lines],
                "expires_at": body.expires_at}
        out = issue(store, [{"type": "reservation.create", "data": data}])
        out["reservation_id"] = data["reservation_id"]
        return out

    @app.delete("/v1/stores/{store}/reservations/{reservation_id}", dependencies=admin)
    def cancel_reservation(store: Annotated[str, Depends(check_store)],
                           reservation_id: str) -> dict[str, Any]:
        return issue(store, [{"type": "reservation.cancel",
                              "data": {"reservation_id": reservation_id}}])

    @app.post("/v1/stores/{store}/counts", dependencies=admin)
    def post_count(store: Annotated[str, Depends(check_store)], body: CountIn
                   ) -> dict[str, Any]:
        data = {"count_id": body.count_id or str(uuid.uuid4()), "skus": body.skus}
        out = issue(store, [{"type": "count.request", "data": data}])
        out["count_id"] = data["count_id"]
        return out

    app.include_router(recall_router(service), dependencies=admin)

    @app.post("/v1/stores/{store}/resync", dependencies=admin)
    def post_resync(store: Annotated[str, Depends(check_store)]) -> dict[str, Any]:
        return issue(store, [{"type": "resync"}])

    app.include_router(customers_router(service, admin))
    app.include_router(pages_router)  # the operations page, alert acks, /docs
    metrics, app.state.metrics = metrics_router(service, admin)  # central.metrics
    app.include_router(metrics)
    return app
