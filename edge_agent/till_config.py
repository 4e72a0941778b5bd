"""Configuration of the till's reading of codes: the variable-measure region, a store's
own variable-measure layouts, and the expiry policy (fields of ``[store]``).

Kept apart from :mod:`edge_agent.config` so that module stays one screen per section;
:class:`edge_agent.config.StoreSection` uses these types and validators.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.barcode import RCN_REGIONS, RcnLayout, region_code

__all__ = ["CUSTOM_REGION", "ExpiryPolicy", "RcnLayoutEntry", "check_rcn_region"]

ExpiryPolicy: TypeAlias = Literal["block", "warn", "allow"]
CUSTOM_REGION = "custom"
ALLOWED_TEXT = ", ".join((*RCN_REGIONS, CUSTOM_REGION))


class RcnLayoutEntry(BaseModel):
    """``[[store.rcn_layouts]]``: an EAN-13 variable-measure layout of the store's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: Annotated[str, Field(pattern=r"^(02|2[0-9])[0-9]?$")]
    """The EAN-13's leading digits (an in-store prefix: 02, 20-29, optionally one more)."""
    measure: Literal["weight", "price"]
    """``weight`` in kg, or ``price`` in the store's currency."""
    value_digits: Annotated[int, Field(ge=3, le=6)]
    """Digits of the value, just before the check digit."""
    decimals: Annotated[int, Field(ge=0, le=4)]

    @model_validator(mode="after")
    def _fits(self) -> RcnLayoutEntry:
        if len(self.prefix) + self.value_digits > 11:
            raise ValueError(f"prefix {self.prefix!r} and {self.value_digits} value digits "
                             "leave no digit for the item reference in an EAN-13")
        if self.decimals > self.value_digits:
            raise ValueError("decimals cannot exceed value_digits")
        return self

    def layout(self) -> RcnLayout:
        return RcnLayout(self.prefix, self.measure, self.value_digits, self.decimals)


def check_rcn_region(value: str) -> str:
    """A region biip supports (as its code, ``"sweden"`` -> ``"se"``) or ``custom``."""
    if value.lower() == CUSTOM_REGION:
        return CUSTOM_REGION
    try:
        region = region_code(value)
    except ValueError:
        region = None
    if region is None:
        raise ValueError(f"{value!r} is not a variable-measure region the barcode library "
                         f"supports; use one of {ALLOWED_TEXT} ('custom' needs "
                         "[[store.rcn_layouts]])")
    return region
