"""Customers at the till: the cache of consenting customers central shares with the store
(keyed identifier hashes and minimal profiles), its commands, and the lookup API.

- :mod:`~edge_agent.customers.commands`: central's ``customers.*`` commands.
- :mod:`~edge_agent.customers.cache`: the constant-work lookup and the tag index.
- :mod:`~edge_agent.customers.api`: ``POST /v1/customers/lookup``.
"""
