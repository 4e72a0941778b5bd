"""Errors of the visitors package (under the agent's root)."""

from __future__ import annotations

from edge_agent.errors import EdgeAgentError


class VisitorsError(EdgeAgentError):
    """Root of the visitors package's errors."""


class LoyaltyCommandInvalid(VisitorsError, ValueError):
    """A ``loyalty.upsert``/``loyalty.remove`` command whose data is malformed; nothing of
    it was applied. The message says what is wrong and never repeats a value."""
