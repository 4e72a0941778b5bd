"""Idempotency keys of the store's writes: a retry with the same key gets the first answer.

One table (``idempotency_keys``) and one rule for the retail, order and session writes, so
keys are unique across all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from edge_agent.errors import OperationError
from edge_agent.ledger import Tx
from sync.wire import canonical_json, loads, now_ts, sha256_hex


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write returns: its result body, and whether it is a replay of an earlier
    write with the same idempotency key and body."""

    body: dict[str, Any]
    replayed: bool = False


def idempotent(
    operation: str,
    body: BaseModel | Mapping[str, Any],
    key: str | None,
    run: Callable[[Tx], dict[str, Any]],
) -> Callable[[Tx], WriteResult]:
    """``run`` once per idempotency key: a retry with the same key and body gets the first
    result back, another body with that key ``idempotency_conflict``."""
    plain = body.model_dump(mode="json") if isinstance(body, BaseModel) else dict(body)
    digest = sha256_hex(canonical_json({"operation": operation, "body": plain}))

    def op(tx: Tx) -> WriteResult:
        if key is not None:
            rows = tx.query(
                "SELECT operation, body_sha256, result FROM idempotency_keys WHERE key = ?",
                (key,),
            )
            if rows:
                if rows[0]["body_sha256"] != digest:
                    raise OperationError(
                        "idempotency_conflict",
                        f"the idempotency key was already used for another "
                        f"{rows[0]['operation']} request; use a new key for a new request",
                    )
                return WriteResult(loads(rows[0]["result"]), replayed=True)
        result = run(tx)
        if key is not None:
            tx.execute(
                "INSERT INTO idempotency_keys (key, operation, body_sha256, result, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                (key, operation, digest, canonical_json(result), now_ts()),
            )
        return WriteResult(result)

    return op
