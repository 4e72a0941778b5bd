"""The ``[omni]`` section of ``edge-central``'s configuration: ATP and order brokering.

Optional and additive: a configuration without it keeps working (every field has a
default). Store attributes given here can be overridden at run time by an operator
(``PUT /v1/omni/stores/{store}``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from central.atp import AtpPolicy

_STRICT = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)

Rule = Literal["together", "proximity", "atp", "capacity", "split"]
DEFAULT_RULES: tuple[Rule, ...] = ("together", "proximity", "atp", "capacity", "split")
Qty = Annotated[int, Field(ge=0, le=1_000_000)]
Postcode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9 -]{1,16}$")]


class StoreAttrs(BaseModel):
    """What brokering needs to know of a store (all optional)."""

    model_config = _STRICT
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    capacity_per_day: int | None = Field(default=None, ge=0, le=1_000_000)
    closed: bool = False
    fulfilling: bool = True
    safety_stock: Qty | None = None

    @property
    def location(self) -> tuple[float, float] | None:
        if self.lat is None or self.lon is None:
            return None
        return (self.lat, self.lon)


class SafetySettings(BaseModel):
    model_config = _STRICT
    default: Qty = 0
    by_sku: dict[str, Qty] = Field(default_factory=dict)
    by_category: dict[str, Qty] = Field(default_factory=dict)
    rfid_factor: float = Field(default=0.5, ge=0, le=1)
    rfid_days: float = Field(default=7.0, ge=0, le=365)


class OmniSettings(BaseModel):
    model_config = _STRICT
    network_threshold: Qty = 0
    stale_after: float = Field(default=900.0, gt=0, le=30 * 86400)
    silent_limit: float = Field(default=4 * 3600.0, gt=0, le=60 * 86400)
    staleness: bool = True
    velocity_window: float = Field(default=3600.0, ge=1, le=7 * 86400)
    accept_within: float = Field(default=900.0, ge=1, le=7 * 86400)
    rebroker_every: float = Field(default=30.0, ge=0.5, le=86400)
    rules: list[Rule] = Field(default_factory=lambda: list(DEFAULT_RULES), min_length=1)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    stores: dict[str, StoreAttrs] = Field(default_factory=dict)
    postcodes: dict[Postcode, tuple[float, float]] = Field(default_factory=dict)

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: list[Rule]) -> list[Rule]:
        if len(set(value)) != len(value):
            raise ValueError("a rule may appear once")
        return value

    def policy(self) -> AtpPolicy:
        return AtpPolicy(default_safety=self.safety.default,
                         safety_by_sku=dict(self.safety.by_sku),
                         safety_by_category=dict(self.safety.by_category),
                         rfid_factor=self.safety.rfid_factor,
                         rfid_days=self.safety.rfid_days,
                         stale_after=self.stale_after, silent_limit=self.silent_limit,
                         network_threshold=self.network_threshold,
                         staleness=self.staleness)
