"""Item-level RFID inventory: counts by reading tags (:mod:`.tally`, :mod:`.engine`),
sold items known by serial (:mod:`.serials`, :mod:`.store`), exit alerts, the API
(:mod:`.api`). See README "RFID inventory" and docs/protocol.md."""
