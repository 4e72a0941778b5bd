"""Digest checks: compare a store's stock digest with central's at the same point, alert
on a mismatch (resync unless events are quarantined), and notice a restored central."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from central.engine.base import EngineBase
from central.engine.state import Group
from central.history_schema import compacted_through
from central.restore import ALERT_KIND as RESTORED_BEHIND
from central.runs import add_events, stock_cells
from sync.errors import WireFormatError
from sync.messages import Digest
from sync.wire import canonical_json, check_deltas, digest_lines

log = logging.getLogger("central")


class DigestsMixin(EngineBase):
    """Stock digest comparison and restore detection."""

    def _on_digest(self, group: Group, store: str, obj: dict[str, Any],
                   range_key: tuple[Any, ...]) -> None:
        digest = self._parse(Digest, obj, group, store, range_key, reason="malformed digest")
        if digest is None:
            return
        self._store(store).pending_digest = digest
        group.digests.add(store)
        self._restored_behind(group, store, digest.epoch, "digest", digest.through_seq)
        self.conn.execute(
            "INSERT INTO stores (store, last_digest) VALUES (?, ?) ON CONFLICT (store) "
            "DO UPDATE SET last_digest = excluded.last_digest",
            (store, canonical_json(obj).decode()))

    def _restored_behind(self, group: Group, store: str, epoch: str, source: str,
                         store_seq: int) -> None:
        """central.restore: after a restore, a store ahead of central raises the alert and
        gets its epoch's (lower) ack again, live (PROTOCOL §4.3)."""
        detail = self.restore_watch.behind(store, epoch, source, store_seq,
                                           self.applied.get((store, epoch), 0))
        if detail is not None:
            self._alert(group, store, RESTORED_BEHIND, "critical", detail)
            group.acks[(store, epoch)] = None

    def digest_ready(self, store: str, digest: Digest) -> bool:
        if self.applied.get((store, digest.epoch), 0) < digest.through_seq:
            return False
        return all(
            self.applied.get(key, 0) >= seen
            for key, seen in self.max_seen.items()
            if key[0] == store and key[1] != digest.epoch
        )

    def central_digest(self, store: str, digest: Digest) -> tuple[int, str]:
        """Central's digest at the digest's (epoch, through_seq, through_cseq) point: the
        exact stock, minus the events of that epoch after ``through_seq`` and the commands
        after ``through_cseq``."""
        cells = stock_cells(self.conn, store)
        add_events(cells, self.conn, store, digest.epoch,
                   (digest.through_seq, self.applied.get((store, digest.epoch), 0)), sign=-1)
        for (body,) in self.conn.execute(
                "SELECT body FROM commands WHERE store = ? AND cseq > ?",
                (store, digest.through_cseq)):
            item = orjson.loads(body)
            for column, name in ((0, "stock"), (1, "reserve")):
                try:
                    pairs = check_deltas(item.get(name, []), name)
                except WireFormatError:
                    continue
                for sku, delta in pairs:
                    cells.setdefault(sku, [0, 0])[column] -= delta
        return digest_lines((sku, c[0], c[1]) for sku, c in cells.items())

    def _check_digest(self, group: Group, store: str) -> None:
        st = self._store(store)
        digest = st.pending_digest
        if digest is None or not self.digest_ready(store, digest):
            return
        st.pending_digest = None
        if digest.through_seq < compacted_through(self.conn, store, digest.epoch):
            log.warning("digest of store %s older than the retained history: not compared",
                        store)  # central.history
            return
        if digest.through_cseq > st.issued:
            self._alert(group, store, "digest_beyond_issued", "warning",
                        {"through_cseq": digest.through_cseq, "issued": st.issued})
            return
        skus, sha = self.central_digest(store, digest)
        match = skus == digest.skus and sha == digest.sha256
        result = {"epoch": digest.epoch, "through_seq": digest.through_seq,
                  "through_cseq": digest.through_cseq, "match": match, "ts": group.ts,
                  "central_skus": skus, "store_skus": digest.skus}
        self.conn.execute("UPDATE stores SET digest_result = ? WHERE store = ?",
                          (canonical_json(result).decode(), store))
        if match:
            return
        self._alert(group, store, "stock_mismatch", "critical", result)
        if st.quarantined:
            log.warning("store %s has quarantined events: no automatic resync", store)
            return
        if st.last_resync_cseq > digest.through_cseq:
            return  # a resync is already on its way
        self._issue_in_tx(group, store, [{"type": "resync"}])
