"""Receiving and count sessions: scans gathered per terminal, closed as one fact."""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

from edge_agent.errors import OperationError
from edge_agent.ledger import Tx
from edge_agent.retail import ops
from edge_agent.retail.base import append_fact
from edge_agent.retail.catalog import CatalogView, QueryFn, conn_query, scan_code
from edge_agent.retail.idempotency import WriteResult
from edge_agent.retail.movements import Movements
from sync.wire import new_uuid, now_ts

SessionKind = Literal["receive", "count"]


class Sessions(Movements):
    """Open, add to, close or cancel a terminal's receiving or count session."""

    @staticmethod
    def _session_view(query: QueryFn, session_id: str) -> dict[str, Any] | None:
        rows = query("SELECT * FROM stock_sessions WHERE session_id = ?", (session_id,))
        if not rows:
            return None
        row = rows[0]
        lines = [{"sku": r["sku"], "qty": int(r["qty"])} for r in query(
            "SELECT sku, qty FROM stock_session_lines WHERE session_id = ? ORDER BY sku",
            (session_id,))]
        return {"session_id": session_id, "kind": row["kind"], "terminal": row["terminal"],
                "status": row["status"], "ref": row["ref"], "count_id": row["count_id"],
                "opened_at": row["opened_at"], "closed_at": row["closed_at"],
                "closed_seq": row["closed_seq"], "lines": lines}

    def _open_session(self, tx: Tx, kind: SessionKind, terminal: str, ref: str | None = None,
                      count_id: str | None = None) -> str:
        rows = tx.query("SELECT session_id FROM stock_sessions WHERE terminal = ? AND kind = ? "
                        "AND status = 'open'", (terminal, kind))
        if rows:
            return str(rows[0]["session_id"])
        session_id = new_uuid()
        tx.execute("INSERT INTO stock_sessions (session_id, kind, terminal, status, ref, "
                   "count_id, opened_at) VALUES (?, ?, ?, 'open', ?, ?, ?)",
                   (session_id, kind, terminal, ref, count_id, now_ts()))
        return session_id

    async def session_open(self, kind: SessionKind, terminal: str, *, ref: str | None = None,
                           count_id: str | None = None) -> dict[str, Any]:
        """Open (or return the already open) session of this kind on this terminal."""
        def run(tx: Tx) -> dict[str, Any]:
            session_id = self._open_session(tx, kind, terminal, ref, count_id)
            out = self._session_view(tx.query, session_id)
            assert out is not None  # noqa: S101 - just opened
            return out

        session = await self.ledger.write(run)
        self._publish("session", {"action": "open", **session})
        return session

    async def session_add(self, kind: SessionKind, terminal: str, *, code: str | None = None,
                          sku: str | None = None, qty: int = 1,
                          session_id: str | None = None) -> dict[str, Any]:
        """Count ``qty`` more of an item into the terminal's open session (opened on demand)."""
        def run(tx: Tx) -> dict[str, Any]:
            view = CatalogView(tx.query)
            if code is not None:
                item_sku = scan_code(view, code, self.rules, kind).item.sku
            elif sku is not None and view.item(sku) is not None:
                item_sku = sku
            else:
                raise OperationError("unknown_sku", f"{sku} is not in the catalog", status=422)
            if session_id is not None:
                rows = tx.query("SELECT status FROM stock_sessions WHERE session_id = ?",
                                (session_id,))
                if not rows:
                    raise OperationError("session_not_found", "no such session", status=404)
                if rows[0]["status"] != "open":
                    raise OperationError("session_closed", "the session is closed")
                sid = session_id
            else:
                sid = self._open_session(tx, kind, terminal)
            tx.execute("INSERT INTO stock_session_lines (session_id, sku, qty) VALUES (?, ?, ?) "
                       "ON CONFLICT (session_id, sku) DO UPDATE SET qty = qty + excluded.qty",
                       (sid, item_sku, qty))
            out = self._session_view(tx.query, sid)
            assert out is not None  # noqa: S101 - exists
            return {**out, "last": {"sku": item_sku, "qty": qty}}

        session = await self._scan_write(run, terminal)
        self._publish("session", {"action": "add", **session})
        return session

    async def open_session_id(self, kind: SessionKind, terminal: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT session_id FROM stock_sessions WHERE terminal = ? AND "
                               "kind = ? AND status = 'open'", (terminal, kind)).fetchone()
            return None if row is None else str(row[0])

        return await self.ledger.read(read)

    async def session(self, session_id: str) -> dict[str, Any]:
        found = await self.ledger.read(
            lambda conn: self._session_view(conn_query(conn), session_id))
        if found is None:
            raise OperationError("session_not_found", "no such session", status=404)
        return found

    async def sessions(self, status: str | None = "open") -> list[dict[str, Any]]:
        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            query = conn_query(conn)
            ids = [r[0] for r in conn.execute(
                "SELECT session_id FROM stock_sessions WHERE ? IS NULL OR status = ? "
                "ORDER BY opened_at", (status, status))]
            return [v for v in (self._session_view(query, i) for i in ids) if v is not None]

        return await self.ledger.read(read)

    async def session_close(self, session_id: str, *,
                            idempotency_key: str | None = None) -> WriteResult:
        """Close a session: a receiving session becomes one ``receipt`` fact, a count session
        one ``count`` fact (expected = on-hand now). An empty session closes with no fact."""
        def run(tx: Tx) -> dict[str, Any]:
            session = self._session_view(tx.query, session_id)
            if session is None:
                raise OperationError("session_not_found", "no such session", status=404)
            if session["status"] != "open":
                raise OperationError("session_closed", f"the session is {session['status']}")
            lines = [(x["sku"], x["qty"]) for x in session["lines"]]
            result: dict[str, Any]
            if not lines:
                result = {"event": None}
            elif session["kind"] == "receive":
                fact = ops.receipt_fact(lines, session["ref"])
                result = {**fact.data, "event": append_fact(tx, fact)}
            else:
                result = self._record_count(tx, session["count_id"] or session_id, lines)
            event = result["event"]
            tx.execute("UPDATE stock_sessions SET status = ?, closed_at = ?, closed_seq = ? "
                       "WHERE session_id = ?",
                       ("closed" if event else "cancelled", now_ts(),
                        event["seq"] if event else None, session_id))
            return {"session_id": session_id, "kind": session["kind"],
                    "terminal": session["terminal"], **result}

        result = await self._write("session.close", {"session_id": session_id},
                                   idempotency_key, run)
        self._publish("session", {"action": "close", **result.body})
        return result

    async def session_cancel(self, session_id: str) -> dict[str, Any]:
        def run(tx: Tx) -> dict[str, Any]:
            changed = tx.execute("UPDATE stock_sessions SET status = 'cancelled', closed_at = ? "
                                 "WHERE session_id = ? AND status = 'open'",
                                 (now_ts(), session_id)).rowcount
            out = self._session_view(tx.query, session_id)
            if out is None:
                raise OperationError("session_not_found", "no such session", status=404)
            if not changed:
                raise OperationError("session_closed", f"the session is {out['status']}")
            return out

        session = await self.ledger.write(run)
        self._publish("session", {"action": "cancel", **session})
        return session
