"""Reference central service of PROTOCOL v1 (``edge-central``).

``central.core.Core`` is the protocol engine (sync, single writer), its jobs in ``central.engine``;
``central.service`` the MQTT/writer/HTTP shell; ``central.api`` the HTTP API;
``central.storage`` the SQLite/PostgreSQL storage interface.
"""
