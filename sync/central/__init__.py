"""Reference central service of PROTOCOL v1 (``edge-central``).

``sync.central.core.Core`` is the protocol engine (sync, single writer);
``sync.central.service`` the MQTT/writer/HTTP shell; ``sync.central.api`` the HTTP API;
``sync.central.storage`` the SQLite/PostgreSQL storage interface.
"""
