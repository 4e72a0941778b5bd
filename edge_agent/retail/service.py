"""The store's retail operations on the ledger, composed from its parts for the API and daemon.

:class:`RetailService` is the thin composition: sales and returns
(:mod:`~edge_agent.retail.sales`), stock movements (:mod:`~edge_agent.retail.movements`),
reads (:mod:`~edge_agent.retail.queries`), baskets (:mod:`~edge_agent.retail.baskets`) and
scan sessions (:mod:`~edge_agent.retail.sessions`), all on the shared write path of
:mod:`~edge_agent.retail.base` (one ledger op per operation, one fact per write).
"""

from __future__ import annotations

from edge_agent.retail.baskets import Baskets
from edge_agent.retail.queries import Queries
from edge_agent.retail.sessions import Sessions


class RetailService(Baskets, Sessions, Queries):
    """Sales, returns, stock movements, baskets and sessions of one store."""
