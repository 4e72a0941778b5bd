"""Operator routes of the customer registry (``/v1/customers``), and the hook that shares
the registry with a store after it fetched its snapshot.

Every change runs as one job on the writer thread: the registry change is committed, then
the ``customers.*`` commands for it are issued to every store (consent withdrawn: a
``customers.remove``), so a store is up to date after its next command sync.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Query
from fastapi.params import Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from central import customer_history as hist
from central import customer_registry as reg
from central.storage import Connection
from sync.errors import WireFormatError
from sync.wire import now_ts, parse_ts

if TYPE_CHECKING:
    from central.core import Core, Publish
    from central.service import CentralService

log = logging.getLogger("central.customers")
T = TypeVar("T")


class OnlineOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_ref: Annotated[str, Field(min_length=1, max_length=128)]
    total: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?$")]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    status: Annotated[str, Field(pattern=r"^(placed|paid|ready|open|fulfilled|cancelled)$")] \
        = "placed"
    placed_at: str | None = None
    lines: list[dict[str, Any]] = Field(default_factory=list, max_length=200)

    @field_validator("placed_at")
    @classmethod
    def _ts(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_ts(value)
            except WireFormatError as exc:
                raise ValueError("placed_at must be an RFC 3339 UTC timestamp") from exc
        return value


def _error(exc: reg.RegistryError) -> JSONResponse:
    return JSONResponse({"code": exc.code, "message": str(exc), "detail": str(exc)},
                        status_code=exc.status)


def _masked(kind: str, value: str) -> str:
    """What an operator screen shows of an identifier: its kind and last two characters."""
    return f"{kind}:…{value[-2:]}"


def summary(conn: Connection, ref: str) -> dict[str, Any]:
    name, consent, context, state = reg.customer_row(conn, ref)
    idents = conn.execute("SELECT kind, value FROM customer_identifiers WHERE ref = ?", (ref,))
    return {"ref": ref, "name": name, "state": state, "consent": consent, "context": context,
            "identifiers": [_masked(str(k), str(v)) for k, v in idents],
            "value": hist.customer_value(conn, ref)}


def after_snapshot(service: CentralService, store: str) -> None:
    """A store that resynced skips every command before its snapshot: send it the pepper
    and every shared customer again (nothing when the registry is empty)."""
    with service.db.reading() as conn:
        if not conn.execute("SELECT 1 FROM customers LIMIT 1"):
            return
    try:
        service.call(lambda core: reg.share(core, None, stores=[store]))
    except Exception:  # the snapshot itself succeeded; the next push repairs this
        log.exception("customers not shared with %s after its snapshot", store)


def customers_router(service: CentralService, dependencies: Sequence[Depends]) -> APIRouter:
    router = APIRouter(prefix="/v1/customers", tags=["customers"],
                       dependencies=list(dependencies))

    def change(fn: Callable[[Connection], T], refs: Callable[[T], list[str] | None]
               ) -> tuple[T, dict[str, Any]]:
        def job(core: Core) -> tuple[tuple[T, dict[str, Any]], list[Publish]]:
            core.conn.begin_write()
            try:
                result = fn(core.conn)
                core.conn.commit()
            except BaseException:
                core.conn.rollback()
                raise
            shared, out = reg.share(core, refs(result))
            return (result, shared), out

        return service.call(job)

    @router.post("")
    def register(body: Annotated[dict[str, Any], Body()]) -> Any:
        """Register a customer: ``name``, ``phone`` (+ ``region`` for a national number),
        ``cards[]``, ``tags[]``, ``consent{recognition, marketing}``, ``loyalty{tier,
        points}``, ``wishlist[]``, ``recently_viewed[]``, optional ``ref``."""
        try:
            ref, shared = change(lambda conn: reg.register(conn, body), lambda r: [r])
        except reg.RegistryError as exc:
            return _error(exc)
        return {"ref": ref, "shared": shared}

    @router.get("")
    def list_customers(limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
                       after: str = "") -> dict[str, Any]:
        with service.db.reading() as conn:
            rows = conn.execute("SELECT ref, name, state, consent FROM customers WHERE ref > ? "
                                "ORDER BY ref LIMIT ?", (after, limit))
        return {"customers": [{"ref": r, "name": n, "state": s, "consent": c}
                              for r, n, s, c in rows]}

    @router.get("/{ref}")
    def get_customer(ref: str) -> Any:
        with service.db.reading() as conn:
            try:
                out = summary(conn, ref)
            except reg.RegistryError as exc:
                return _error(exc)
            out["history"] = hist.history(conn, ref)
        return out

    @router.get("/{ref}/value")
    def get_value(ref: str) -> Any:
        """The omnichannel value index (formula: ``central.customer_history``)."""
        with service.db.reading() as conn:
            if not conn.execute("SELECT 1 FROM customers WHERE ref = ?", (ref,)):
                return _error(reg.RegistryError("unknown_customer", f"no customer {ref!r}", 404))
            return {"ref": ref, **hist.customer_value(conn, ref)}

    @router.get("/{ref}/history")
    def get_history(ref: str, limit: Annotated[int, Query(ge=1, le=10_000)] = 200
                    ) -> dict[str, Any]:
        with service.db.reading() as conn:
            return {"ref": ref, "history": hist.history(conn, ref, limit)}

    def change_one(ref: str, fn: Callable[[Connection], object], **answer: bool) -> Any:
        """Change one customer and share it again: its answer, or the registry's error."""
        try:
            _, shared = change(fn, lambda _: [ref])
        except reg.RegistryError as exc:
            return _error(exc)
        return {"ref": ref, **answer, "shared": shared}

    @router.patch("/{ref}")
    def patch_customer(ref: str, body: Annotated[dict[str, Any], Body()]) -> Any:
        return change_one(ref, lambda conn: reg.update(conn, ref, body))

    @router.post("/{ref}/withdraw")
    def withdraw(ref: str) -> Any:
        """Recognition consent withdrawn: every store drops the customer at its next sync."""
        return change_one(ref, lambda conn: reg.withdraw(conn, ref), withdrawn=True)

    @router.delete("/{ref}")
    def erase(ref: str) -> Any:
        """Erasure: registry, identifiers and history deleted; stores drop the customer."""
        return change_one(ref, lambda conn: reg.erase(conn, ref), erased=True)

    @router.post("/{ref}/online-orders")
    def online_order(ref: str, body: OnlineOrderIn) -> Any:
        """Record an online order in the customer's history (idempotent per order_ref)."""
        def record(conn: Connection) -> None:
            reg.customer_row(conn, ref)  # 404 for an unknown customer
            hist.record_online_order(conn, ref, {**body.model_dump(),
                                                 "placed_at": body.placed_at or now_ts()})
        try:
            _, shared = change(record, lambda _: [ref])
        except reg.RegistryError as exc:
            return _error(exc)
        return {"ref": ref, "order_ref": body.order_ref, "shared": shared}

    @router.post("/push")
    def push() -> dict[str, Any]:
        """Send every store the pepper and every shared customer (refreshes their
        retention and online context; run daily)."""
        return service.call(lambda core: reg.share(core, None))

    @router.post("/keys/rotate")
    def rotate() -> dict[str, Any]:
        """A new pepper: stores get it, every customer re-hashed, then the old key retired."""
        def job(core: Core) -> tuple[dict[str, Any], list[Publish]]:
            core.conn.begin_write()
            try:
                previous, new = reg.rotate_key(core.conn)
                core.conn.commit()
            except BaseException:
                core.conn.rollback()
                raise
            shared, out = reg.share(core, None, retire=previous)
            return {"previous": previous, "key_id": new, **shared}, out

        return service.call(job)

    return router
