"""Read-side queries of the central (each runs inside one consistent read) and the pure
helper that splits a catalog import into commands within the 64 KiB item limit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from central.recalls import active_recalls
from central.runs import stock_cells, stored_events
from central.storage import Connection, Row
from sync.messages import CatalogItem
from sync.wire import MAX_ITEM_BYTES, SKU_RE, canonical_json

_ENVELOPE = 400  # bytes of a command around its data (cseq, id, type, ts, lists)


def snapshot(conn: Connection, store: str) -> dict[str, Any]:
    """PROTOCOL §5.3 body. Must run inside one read transaction (``Database.reading``)."""
    rows = conn.execute("SELECT issued_cseq FROM stores WHERE store = ?", (store,))
    through_cseq = int(rows[0][0]) if rows else 0
    epochs = {e: int(s) for e, s in conn.execute(
        "SELECT epoch, applied_seq FROM epochs WHERE store = ? ORDER BY epoch", (store,))}
    catalog = [orjson.loads(item) for (item,) in conn.execute(
        "SELECT item FROM catalog WHERE store = ? ORDER BY sku", (store,))]
    stock_rows = [{"sku": sku, "on_hand": on, "reserved": res}
                  for sku, (on, res) in sorted(stock_cells(conn, store).items())
                  if on or res]
    reservations = [
        {"reservation_id": rid, "order_ref": ref, "lines": orjson.loads(lines),
         "expires_at": expires, "cancel_requested": bool(cancel)}
        for rid, ref, lines, expires, cancel in conn.execute(
            "SELECT reservation_id, order_ref, lines, expires_at, cancel_requested FROM "
            "reservations WHERE store = ? AND state = 'open' ORDER BY reservation_id", (store,))
    ]
    counts = [{"count_id": cid, "skus": orjson.loads(skus)} for cid, skus in conn.execute(
        "SELECT count_id, skus FROM count_requests WHERE store = ? AND state = 'open' "
        "ORDER BY count_id", (store,))]
    return {"v": 1, "store": store, "through_cseq": through_cseq, "epochs": epochs,
            "catalog": catalog, "stock": stock_rows, "reservations": reservations,
            "count_requests": counts,
            "recalls": [{k: v for k, v in data.items() if k not in ("cseq", "delivered")}
                        for _, data in sorted(active_recalls(conn, store).items())]}


_STATUS_COLUMNS = ("store", "state", "epoch", "boot_id", "agent", "last_seq",
                   "birth_applied_cseq", "state_ts", "issued_cseq", "acked_cseq", "health",
                   "health_ts", "last_digest", "digest_result")


def store_status(conn: Connection, store: str) -> dict[str, Any] | None:
    rows = conn.execute(f"SELECT {', '.join(_STATUS_COLUMNS)} FROM stores WHERE store = ?",
                        (store,))
    if not rows:
        return None
    out = dict(zip(_STATUS_COLUMNS, rows[0], strict=True))
    for key in ("health", "last_digest", "digest_result"):
        if out[key] is not None:
            out[key] = orjson.loads(out[key])
    out["epochs"] = [
        {"epoch": e, "applied_seq": int(a), "max_seen_seq": int(m)}
        for e, a, m in conn.execute(
            "SELECT epoch, applied_seq, max_seen_seq FROM epochs WHERE store = ? "
            "ORDER BY first_seen, epoch", (store,))]
    # last_seq: what central has applied of the store's current epoch, as the digest
    # counts it; the store's own figure at its last birth stays as birth_last_seq.
    out["birth_last_seq"] = out["last_seq"]
    current = [e["applied_seq"] for e in out["epochs"] if e["epoch"] == out["epoch"]]
    out["last_seq"] = current[0] if current else out["last_seq"]
    out["devices"] = [orjson.loads(b) for (b,) in conn.execute(
        "SELECT body FROM devices WHERE store = ? ORDER BY device", (store,))]
    out["drops"] = {r: int(n) for r, n in conn.execute(
        "SELECT reason, count FROM drops WHERE store = ? ORDER BY reason", (store,))}
    out["quarantined_open"] = int(conn.execute(
        "SELECT COUNT(*) FROM quarantine WHERE store = ? AND resolved = 0", (store,))[0][0])
    return out


def stores_overview(conn: Connection) -> list[dict[str, Any]]:
    applied = {}
    for store, total in conn.execute(
            "SELECT store, SUM(applied_seq) FROM epochs GROUP BY store"):
        applied[store] = int(total or 0)
    return [
        {"store": s, "state": state, "epoch": epoch, "issued_cseq": int(issued),
         "acked_cseq": None if acked is None else int(acked),
         "events_applied": applied.get(s, 0)}
        for s, state, epoch, issued, acked in conn.execute(
            "SELECT store, state, epoch, issued_cseq, acked_cseq FROM stores ORDER BY store")
    ]


def stock(conn: Connection, store: str, skus: list[str] | None = None) -> list[dict[str, Any]]:
    wanted = set(skus) if skus else None
    return [{"sku": sku, "on_hand": on, "reserved": res, "available": on - res}
            for sku, (on, res) in sorted(stock_cells(conn, store).items())
            if wanted is None or sku in wanted]


def select_limited(conn: Connection, select: str, filters: Sequence[tuple[str, Any]],
                   order: str, limit: int, *, fixed: Sequence[str] = ()) -> list[Row]:
    """The first ``limit`` rows of ``select`` in ``order``, narrowed by the ``fixed``
    conditions and by each ``(condition with one ?, value)`` filter whose value is given."""
    where = list(fixed)
    params: list[Any] = []
    for condition, value in filters:
        if value:
            where.append(condition)
            params.append(value)
    sql = select + (" WHERE " + " AND ".join(where) if where else "")
    return conn.execute(f"{sql} ORDER BY {order} LIMIT ?", [*params, limit])


def alerts(conn: Connection, store: str | None, kind: str | None,
           limit: int) -> list[dict[str, Any]]:
    rows = select_limited(conn, "SELECT id, ts, store, kind, severity, detail FROM alerts",
                          [("store = ?", store), ("kind = ?", kind)], "id DESC", limit)
    return [{"id": int(i), "ts": ts, "store": s, "kind": k, "severity": sev,
             "detail": orjson.loads(d)}
            for i, ts, s, k, sev, d in rows]


def quarantined(conn: Connection, store: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for epoch, seq, reason, resolved in conn.execute(
            "SELECT epoch, seq, reason, resolved FROM quarantine WHERE store = ? "
            "ORDER BY epoch, seq", (store,)):
        kept = stored_events(conn, store, epoch, int(seq), int(seq)).get(int(seq))
        out.append({"epoch": epoch, "seq": int(seq), "reason": reason,
                    "resolved": bool(resolved),
                    "event": None if kept is None else orjson.loads(bytes(kept[1]))})
    return out


def catalog_commands(items: list[dict[str, Any]], remove: list[str]) -> list[dict[str, Any]]:
    """Split a catalog change into ``catalog.upsert``/``catalog.remove`` command specs, each
    small enough that the full command stays within the 64 KiB canonical limit (§2)."""
    budget = MAX_ITEM_BYTES - _ENVELOPE
    specs: list[dict[str, Any]] = []
    chunk: list[dict[str, Any]] = []
    size = 0
    for raw in items:
        try:
            item = CatalogItem.model_validate(raw).model_dump(mode="json")
        except ValidationError as exc:
            raise ValueError(f"invalid catalog item {raw.get('sku')!r}: "
                             f"{exc.errors()[0]['msg']}") from exc
        n = len(canonical_json(item)) + 1
        if n > budget:
            raise ValueError(f"catalog item {item['sku']} alone exceeds the 64 KiB limit")
        if chunk and size + n > budget:
            specs.append({"type": "catalog.upsert", "data": {"items": chunk}})
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        specs.append({"type": "catalog.upsert", "data": {"items": chunk}})
    for sku in remove:
        if SKU_RE.fullmatch(sku) is None:
            raise ValueError(f"{sku!r} is not a valid SKU")
    step = max(1, budget // 70)  # a SKU is at most 64 bytes + quotes and comma
    specs.extend({"type": "catalog.remove", "data": {"skus": remove[start:start + step]}}
                 for start in range(0, len(remove), step))
    return specs
