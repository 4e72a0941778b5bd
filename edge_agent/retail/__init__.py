"""Retail operations: sales, returns, receiving, counts, transfers, click-and-collect
fulfilment, stock views, baskets and sessions of scan-only terminals.

Pure rules live in :mod:`edge_agent.retail.ops`; :class:`RetailService` runs them inside
ledger transactions; :class:`ScanModes` drives them from scanners.
"""

from edge_agent.retail.idempotency import WriteResult
from edge_agent.retail.service import RetailService

__all__ = ["RetailService", "WriteResult"]
