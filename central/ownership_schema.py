"""Store ownership's settings and tables (see :mod:`central.ownership`), apart from the
manager so the configuration can import them without a cycle."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

OWNERSHIP_TABLES = (
    "CREATE TABLE IF NOT EXISTS partition_leases (part BIGINT PRIMARY KEY, worker TEXT, "
    "token BIGINT NOT NULL DEFAULT 0, expires_at DOUBLE PRECISION NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS central_workers (worker TEXT PRIMARY KEY, "
    "seen_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fencing_log (id BIGSERIAL PRIMARY KEY, part BIGINT NOT NULL, "
    "store TEXT NOT NULL, epoch TEXT NOT NULL, applied_seq BIGINT NOT NULL, "
    "worker TEXT NOT NULL, token BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL)",
)


class OwnershipSettings(BaseModel):
    """``[ownership]``: workers share the chain's stores through PostgreSQL leases.

    The stores are hashed into ``partitions``; a worker holds a lease per partition, renews
    it every ``lease_ttl_s / 3`` and subscribes to the topics of those stores only. A lease
    not renewed for ``lease_ttl_s`` is taken over by another worker."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    partitions: int = Field(default=64, ge=1, le=4096)
    lease_ttl_s: float = Field(default=10.0, ge=0.5, le=600)
    worker_name: str = Field(default="central", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
