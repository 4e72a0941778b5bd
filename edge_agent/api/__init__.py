"""The agent's local HTTP API for POS software and the technician CLI.

``edge_agent.api.app.create_app(services)`` builds the FastAPI app;
``edge_agent.api.server.serve_api(app, api_section)`` runs it on the Unix socket (no
token; file permissions guard it) and optionally on loopback TCP (bearer token required).
This package's ``__init__`` imports nothing, so a router elsewhere (``edge_agent.orders``)
may share :mod:`edge_agent.api.params` without importing the whole app.
"""
