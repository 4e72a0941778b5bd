"""The store page's recent alerts: a partial index over the ``alert`` events, so that
"newest alerts first" reads a handful of index entries instead of scanning the ledger."""

VERSION = 7

SQL = """
CREATE INDEX events_alerts ON events (id) WHERE type = 'alert';
"""
