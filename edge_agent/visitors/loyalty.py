"""The retired ``loyalty.upsert`` / ``loyalty.remove`` commands: clearly refused.

They carried an unkeyed SHA-256 of each registered tag id, which a store (or anyone with
a copy of its database) could brute-force for a 40-bit EM4100 id. Registered tags now come
with the customer's other identifiers as keyed hashes under the chain's pepper, in
``customers.upsert`` (:mod:`edge_agent.customers.commands`); ledger migration
``m0006_customers`` dropped the old table. An old command is flagged with this reason
(its cseq consumed, nothing stored), so an operator sees that central must be upgraded.
"""

from __future__ import annotations

from typing import Any, Final

from edge_agent.ledger import Tx
from edge_agent.visitors.errors import LoyaltyCommandInvalid

COMMAND_TYPES: Final = frozenset({"loyalty.upsert", "loyalty.remove"})
REFUSED: Final = (
    "unkeyed loyalty tag hashes are no longer accepted: send registered tags as keyed "
    "'tag' identifiers in customers.upsert (docs/protocol.md, customers.*)")


def apply_loyalty_command(_tx: Tx, command_type: str, _data: dict[str, Any]) -> None:
    """Refuse the command: raises :class:`LoyaltyCommandInvalid` without any write."""
    if command_type not in COMMAND_TYPES:
        raise LoyaltyCommandInvalid(f"{command_type!r} is not a loyalty command")
    raise LoyaltyCommandInvalid(REFUSED)
