"""Central restored from a backup: the marker a restore leaves, and the check that central
is behind what its stores have seen acknowledged (PROTOCOL §4.3, the lower-ack path).

``edge-central db restore`` writes ``meta.restored_at`` (and the backup's own
``meta.backup_taken``) into the restored database. While that marker is there, a live
birth whose ``last_seq`` or a digest whose ``through_seq`` is beyond what central applied
of that epoch is central's own lost history, not a store's ordinary backlog: central raises
one critical ``central_restored_behind`` alert per (store, epoch) and acknowledges that
epoch again at once, live. The store sees a live ack below its stored watermark and goes
back to it (PROTOCOL §4.3). The operator clears the marker (``edge-central db
restore-done``) once every store has caught up; without a marker the same observations
are an ordinary backlog and raise nothing. While the marker is set, a store that merely
had events it had not sent yet also raises the alert once: central cannot tell the two
apart from a birth or a digest alone (the alert's detail gives both numbers).
"""

from __future__ import annotations

from typing import Any

from central.storage import Connection

RESTORED_AT = "restored_at"
BACKUP_TAKEN = "backup_taken"
ALERT_KIND = "central_restored_behind"


def read_meta(conn: Connection, key: str) -> str | None:
    rows = conn.execute("SELECT value FROM meta WHERE key = ?", (key,))
    return str(rows[0][0]) if rows else None


def write_meta(conn: Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                 "DO UPDATE SET value = excluded.value", (key, value))


class RestoreWatch:
    """Which (store, epoch) already raised the alert since this central started."""

    def __init__(self, restored_at: str | None, backup_taken: str | None) -> None:
        self.restored_at = restored_at
        self.backup_taken = backup_taken
        self._alerted: set[tuple[str, str]] = set()

    @classmethod
    def load(cls, conn: Connection) -> RestoreWatch:
        return cls(read_meta(conn, RESTORED_AT), read_meta(conn, BACKUP_TAKEN))

    @property
    def active(self) -> bool:
        return self.restored_at is not None

    def behind(self, store: str, epoch: str, source: str, store_seq: int,
               applied: int) -> dict[str, Any] | None:
        """The alert detail when ``store_seq`` (what the store reports from ``source``:
        ``birth`` or ``digest``) proves central lost acknowledged history; else None."""
        if not self.active or store_seq <= applied or (store, epoch) in self._alerted:
            return None
        if len(self._alerted) > 1_000_000:
            self._alerted.clear()
        self._alerted.add((store, epoch))
        return {"epoch": epoch, "source": source, "store_seq": store_seq,
                "central_applied": applied, "restored_at": self.restored_at,
                "backup_taken": self.backup_taken}
