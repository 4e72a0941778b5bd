"""The agent's local HTTP API for POS software and the technician CLI.

``create_app(services)`` builds the FastAPI app; ``serve_api(app, api_section)`` runs it
on the Unix socket (no token; file permissions guard it) and optionally on loopback TCP
(bearer token required).
"""

from edge_agent.api.app import create_app
from edge_agent.api.server import serve_api

__all__ = ["create_app", "serve_api"]
