"""Commands: issue operator commands (gapless cseqs, committed with their effect), send
them in windows, follow the stores' acks, and resend when a store stops progressing."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from central.engine.base import EngineBase
from central.engine.planners import plan
from central.engine.records import RECORDERS
from central.engine.state import COMMAND_WINDOW, Group, Publish
from central.errors import InvalidCommandError, StorageError
from central.fencing import Fenced, Fencing
from sync.messages import CommandAck
from sync.wire import (
    MAX_BATCH_ITEMS,
    MAX_ITEM_BYTES,
    MAX_PAYLOAD_BYTES,
    STORE_RE,
    canonical_json,
    now_ts,
)

log = logging.getLogger("central")


class CommandsMixin(EngineBase):
    """Command issue, delivery and resend."""

    def issue(self, store: str, specs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                                     list[Publish]]:
        """Issue operator commands to a store: validated, given gapless cseqs, committed
        with their effect on central's state, then (if the store is reachable) sent."""
        if STORE_RE.fullmatch(store) is None:
            raise InvalidCommandError(f"{store!r} is not a valid store id")
        if not self.owns(store):
            raise InvalidCommandError(f"store {store} belongs to another central partition")
        if not specs:
            raise InvalidCommandError("no command given")
        now = self.clock()
        group = Group(ts=now_ts(), now=now)
        st = self._store(store)
        before = st.issued, st.last_resync_cseq
        self.conn.begin_write()
        try:
            if self.fencing is not None:
                self._fence_issue(self.fencing, store)  # central.fencing: still the owner?
            issued = self._issue_in_tx(group, store, specs)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            self._watcher_rolled_back()
            st.issued, st.last_resync_cseq = before
            raise
        return issued, self._committed(group, now)

    def _committed(self, group: Group, now: float) -> list[Publish]:
        """After a commit: tell the watcher, and read back the commands the group sends."""
        if self.watcher is not None:
            self.watcher.committed()
        out: list[Publish] = []
        for target, start in group.sends:
            out.extend(self._send_from(target, start, now))
        return out

    def _fence_issue(self, fencing: Fencing, store: str) -> None:
        """central.ownership: an operator command commits only under this worker's lease."""
        try:
            fencing.begin(self.conn)
        except Fenced:
            self.conn.rollback()
            self.load()  # forget the lost partitions' pending stock deltas
            raise InvalidCommandError(f"store {store} moved to another worker; retry there"
                                      ) from None
        if not self.owns(store):
            raise InvalidCommandError(f"store {store} belongs to another central worker")

    def _issue_in_tx(self, group: Group, store: str,
                     specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        st = self._store(store)
        conn = self.conn
        conn.execute("INSERT INTO stores (store) VALUES (?) ON CONFLICT (store) DO NOTHING",
                      (store,))
        commands: list[dict[str, Any]] = []
        for spec in specs:
            command = plan(self.conn, store, spec, group.ts)
            command["cseq"] = st.issued + 1
            body = canonical_json(command)
            if len(body) > MAX_ITEM_BYTES:
                raise InvalidCommandError(
                    f"command {command['type']} is {len(body)} bytes, over the 64 KiB limit")
            st.issued += 1
            if command["type"] == "resync":
                st.last_resync_cseq = st.issued
            self._apply_command(store, command)
            conn.execute(
                "INSERT INTO commands (store, cseq, id, type, body, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (store, command["cseq"], command["id"], command["type"], body.decode(),
                 group.ts))
            commands.append(command)
        conn.execute("UPDATE stores SET issued_cseq = ? WHERE store = ?", (st.issued, store))
        self._flush_alerts(group)
        if st.online and st.acked is not None and st.sent_through - st.acked < COMMAND_WINDOW:
            group.sends.append((store, max(st.sent_through, st.acked) + 1))
        return [{"cseq": c["cseq"], "id": c["id"], "type": c["type"]} for c in commands]

    def _apply_command(self, store: str, command: dict[str, Any]) -> None:
        conn = self.conn
        cells: dict[str, list[int]] = {}
        for name, column in (("stock", 0), ("reserve", 1)):
            for line in command[name]:
                cells.setdefault(line["sku"], [0, 0])[column] += line["delta"]
        if cells:
            conn.add_stock([(store, sku, c[0], c[1]) for sku, c in cells.items()])
        if self.watcher is not None:
            self.watcher.on_command(store, command)
        record = RECORDERS.get(command["type"])
        if record is not None:
            record(conn, store, command["data"])

    def _on_command_ack(self, group: Group, store: str, obj: dict[str, Any],
                        range_key: tuple[Any, ...], retained: bool) -> None:
        now = group.now
        ack = self._parse(CommandAck, obj, group, store, range_key, reason="malformed commands/ack")
        if ack is None:
            return
        st = self._store(store)
        through = ack.through_cseq
        prev = st.acked
        st.acked = through
        self._persist_acked(store, through)
        if through > st.issued:
            self._alert(group, store, "command_ack_beyond_issued", "critical",
                        {"through_cseq": through, "issued": st.issued})
            return
        if prev is None or through > prev:
            st.last_progress = now
            st.sent_through = max(st.sent_through, through)
            if st.sent_through < st.issued and st.sent_through - through < COMMAND_WINDOW // 2:
                group.sends.append((store, st.sent_through + 1))
            elif prev is None and through < st.issued:
                group.sends.append((store, through + 1))
            return
        if through < prev:
            log.warning("store %s reports commands through %d, below %d: resending",
                        store, through, prev)
            st.last_goback = now
            group.sends.append((store, through + 1))
            return
        # through == prev: no progress
        if (not retained and st.sent_through > through
                and now - st.last_goback >= 1.0):
            st.last_goback = now
            group.sends.append((store, through + 1))

    def _send_from(self, store: str, start: int, now: float) -> list[Publish]:
        """Command batches from ``start`` within the window; read back from the database."""
        st = self._store(store)
        if st.acked is None or start > st.issued:
            return []
        upto = min(st.issued, max(st.acked, start - 1) + COMMAND_WINDOW)
        rows = self.conn.execute(
            "SELECT cseq, body FROM commands WHERE store = ? AND cseq >= ? AND cseq <= ? "
            "ORDER BY cseq", (store, start, upto))
        if st.sent_through <= st.acked:
            st.last_progress = now
        out: list[Publish] = []
        topic = f"{self.root}/v1/stores/{store}/commands"
        head = b'{"commands":['
        tail = b'],"store":' + orjson.dumps(store) + b',"v":1}'
        chunk: list[bytes] = []
        size = len(head) + len(tail)
        for cseq, body in rows:
            raw = body.encode() if isinstance(body, str) else bytes(body)
            if chunk and (len(chunk) >= MAX_BATCH_ITEMS
                          or size + len(raw) + 1 > MAX_PAYLOAD_BYTES):
                out.append(Publish(topic, head + b",".join(chunk) + tail))
                chunk = []
                size = len(head) + len(tail)
            chunk.append(raw)
            size += len(raw) + 1
            st.sent_through = max(st.sent_through, int(cseq))
        if chunk:
            out.append(Publish(topic, head + b",".join(chunk) + tail))
        return out

    def tick(self) -> list[Publish]:
        """Timer: resend to stores whose watermark has not moved for ``resend_after``."""
        now = self.clock()
        out: list[Publish] = []
        if self.watcher is not None:
            try:
                out.extend(self.watcher.tick(self.run_write))
            except Fenced:  # central.fencing: rolled back; the next tick runs without it
                log.warning("order timers: a lease was lost; nothing of that tick committed")
        due = [store for store, st in self.stores.items()
               if st.online and st.acked is not None and st.acked < st.issued
               and self.owns(store)  # central.ownership: not another worker's store
               and now - st.last_progress >= self.resend_after]
        if not due:
            return out
        try:
            for store in due:
                st = self.stores[store]
                acked = st.acked or 0
                st.last_progress = now
                log.info("store %s: no command progress for %.0fs, resending from %d",
                         store, self.resend_after, acked + 1)
                out.extend(self._send_from(store, acked + 1, now))
        except StorageError:
            log.exception("resend read failed")
        return out
