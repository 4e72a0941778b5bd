"""Walk-ins: visits, footfall and conversion from presence readers and door counters,
private by construction (pseudonyms with a rotating key; no raw shopper id is stored).

- :class:`~edge_agent.visitors.engine.VisitorsEngine`: the daemon part (handle/run).
- :mod:`edge_agent.visitors.sessions`: the pure sessioniser.
- :func:`~edge_agent.visitors.loyalty.apply_loyalty_command`: central's loyalty commands.
- :func:`~edge_agent.visitors.report.visitors_today`: figures for ``edge-agent visitors``.
- :data:`~edge_agent.visitors.api.router`: ``/v1/visitors`` routes.
"""
