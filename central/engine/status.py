"""Store status: births and deaths (command delivery state), health reports and device
states, as the stores publish them."""

from __future__ import annotations

import logging
from typing import Any

from central.engine.base import EngineBase
from central.engine.state import Group
from sync.messages import DeviceState, Health, Status
from sync.wire import canonical_json, now_ts

log = logging.getLogger("central")


class StatusMixin(EngineBase):
    """A store's birth, death, health and devices."""

    def _on_status(self, group: Group, store: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...], retained: bool = False) -> None:
        now = group.now
        status = self._parse(Status, obj, group, store, range_key, reason="malformed status")
        if status is None:
            return
        st = self._store(store)
        if status.state == "offline":
            if st.boot_id is not None and status.boot_id != st.boot_id:
                log.info("stale death of store %s (boot %s, current %s) ignored",
                         store, status.boot_id, st.boot_id)
                return
            st.online = False
            self._upsert_store(store, "offline", status)
            return
        st.online = True
        st.boot_id = status.boot_id
        st.epoch = status.epoch
        applied = self.applied.get((store, status.epoch), 0)
        # A retained birth replayed when central (re)subscribes is old news: its last_seq
        # predates everything applied since, so only a live birth can prove a rollback.
        if not retained and status.last_seq is not None and status.last_seq < applied:
            self._alert(group, store, "history_rolled_back", "critical",
                        {"epoch": status.epoch, "birth_last_seq": status.last_seq,
                         "central_applied": applied})
        # PROTOCOL §4.3: a birth beyond what central applied (central restored from a
        # backup while the store was away, or a backlog): ack that epoch again, live, so an
        # idle store goes back now rather than at its next fact. A retained birth counts
        # too: replayed when central (re)subscribes, it says the store is online with
        # events central may never have heard while it was away from the broker (a clean
        # session queues nothing). An ack never moves backwards, so this is always safe.
        if status.last_seq is not None and status.last_seq > applied:
            group.acks[(store, status.epoch)] = None
            self._restored_behind(group, store, status.epoch, "birth", status.last_seq)
        self._upsert_store(store, "online", status)
        if status.applied_cseq is None:
            st.acked = None  # wait for its commands/ack (first resync pending)
            st.sent_through = 0
            return
        st.acked = status.applied_cseq
        st.sent_through = status.applied_cseq
        st.last_progress = now
        self._persist_acked(store, st.acked)
        if st.issued > st.acked:
            group.sends.append((store, st.acked + 1))

    def _upsert_store(self, store: str, state: str, status: Status) -> None:
        self.conn.execute(
            "INSERT INTO stores (store, state, epoch, boot_id, agent, last_seq, "
            "birth_applied_cseq, state_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (store) DO UPDATE SET state = excluded.state, epoch = excluded.epoch, "
            "boot_id = excluded.boot_id, agent = COALESCE(excluded.agent, stores.agent), "
            "last_seq = COALESCE(excluded.last_seq, stores.last_seq), "
            "birth_applied_cseq = excluded.birth_applied_cseq, state_ts = excluded.state_ts",
            (store, state, status.epoch, status.boot_id, status.agent, status.last_seq,
             status.applied_cseq, status.ts or now_ts()),
        )

    def _on_health(self, group: Group, store: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...]) -> bool:
        if self._parse(Health, obj, group, store, range_key, reason="malformed health") is None:
            return False
        self.conn.execute(
            "INSERT INTO stores (store, health, health_ts) VALUES (?, ?, ?) "
            "ON CONFLICT (store) DO UPDATE SET health = excluded.health, "
            "health_ts = excluded.health_ts",
            (store, canonical_json(obj).decode(), group.ts))
        return True

    def _on_device(self, group: Group, store: str, device: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...]) -> None:
        state = self._parse(DeviceState, obj, group, store, range_key,
                            reason="malformed device state")
        if state is None:
            return
        if state.device != device:
            self._drop(group, store, "device differs from topic", range_key)
            return
        self.conn.execute(
            "INSERT INTO devices (store, device, body) VALUES (?, ?, ?) ON CONFLICT "
            "(store, device) DO UPDATE SET body = excluded.body",
            (store, device, canonical_json(obj).decode()))
