"""Request models of the retail operations (strict: money as decimal strings, integer
quantities, no floats). Used by the local API and by :class:`RetailService` alike."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from drivers.carddata import is_card_data
from sync.wire import MAX_SAFE_INT

CARD_DATA_MESSAGE = (
    "this looks like payment card data (a card number or track data); card data must never "
    "be sent to the agent"
)


def looks_like_card_data(value: str) -> bool:
    """The text holds card data by :func:`drivers.carddata.is_card_data` (which looks at
    every digit run inside it; a valid GTIN never counts)."""
    return is_card_data(value)


def no_card_data(value: str) -> str:
    """Refuse text that looks like a PAN or track data (PCI-DSS: never store it)."""
    if looks_like_card_data(value):
        raise ValueError(CARD_DATA_MESSAGE)
    return value


Sku = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9._:/-]{1,64}$"), AfterValidator(no_card_data)
]
Money = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,12}(\.[0-9]{1,6})?$")]
Qty = Annotated[int, Field(gt=0, le=MAX_SAFE_INT)]
SignedQty = Annotated[int, Field(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
Ident = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9._:/-]{1,64}$"), AfterValidator(no_card_data)
]
Terminal = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
FreeText = Annotated[str, StringConstraints(max_length=200), AfterValidator(no_card_data)]
# Scanned codes are checked for card data by the service, which knows the catalog's GTINs
# (an EAN-13 can pass the Luhn check of a 13-digit Visa number).
Code = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Gtin = Annotated[str, StringConstraints(pattern=r"^[0-9]{8,14}$")]
Epc = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{24}$")]
"""An SGTIN-96 EPC in hex: the tag of one serialised item (edge_agent.rfid)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SaleLineIn(_Model):
    sku: Sku | None = None
    gtin: Gtin | None = None
    barcode: Code | None = None
    epc: Epc | None = None
    """The item's RFID tag: the sale records its serial (one item; alone or with a key)."""
    qty: Qty | None = None
    unit_price: Money | None = None

    @model_validator(mode="after")
    def _one_key(self) -> SaleLineIn:
        given = [x for x in (self.sku, self.gtin, self.barcode) if x is not None]
        if len(given) > 1 or (not given and self.epc is None):
            raise ValueError("give exactly one of sku, gtin or barcode (or an epc alone)")
        if self.epc is not None and self.qty not in (None, 1):
            raise ValueError("a line with an epc sells exactly one item (qty 1)")
        return self


class PaymentIn(_Model):
    method: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,32}$")]
    amount: Money


class SaleRequest(_Model):
    terminal: Terminal
    lines: Annotated[list[SaleLineIn], Field(min_length=1, max_length=500)]
    payments: Annotated[list[PaymentIn], Field(
        min_length=1, max_length=20,
        description="Must cover the total; only `cash` may exceed it (the excess is "
                    "change).")]
    currency: Currency | None = None
    customer: Ident | None = None
    sale_id: Ident | None = None


class ReturnLineIn(_Model):
    sku: Sku
    qty: Qty
    restock: bool | None = None
    unit_price: Money | None = None
    epc: Epc | None = None
    """The returned item's RFID tag: it is no longer sold (qty 1)."""

    @model_validator(mode="after")
    def _one_tagged_item(self) -> ReturnLineIn:
        if self.epc is not None and self.qty != 1:
            raise ValueError("a line with an epc returns exactly one item (qty 1)")
        return self


class ReturnRequest(_Model):
    sale_id: Ident | None = None
    lines: Annotated[list[ReturnLineIn], Field(min_length=1, max_length=500)]
    restock: bool = True
    terminal: Terminal | None = None
    return_id: Ident | None = None
    customer: Ident | None = None
    """Central's customer reference, from a lookup at the till (docs/protocol.md §4.2)."""


class LineIn(_Model):
    sku: Sku
    qty: Qty


class SignedLineIn(_Model):
    sku: Sku
    qty: SignedQty

    @model_validator(mode="after")
    def _nonzero(self) -> SignedLineIn:
        if self.qty == 0:
            raise ValueError("qty must not be 0")
        return self


class ReceiptRequest(_Model):
    ref: FreeText | None = None
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=1000)]


class AdjustmentRequest(_Model):
    reason: Literal["damage", "shrink", "found", "correction"]
    lines: Annotated[list[SignedLineIn], Field(min_length=1, max_length=1000)]
    note: FreeText | None = None


class CountLineIn(_Model):
    sku: Sku
    counted: Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]


class CountRequest(_Model):
    count_id: Ident | None = None
    lines: Annotated[list[CountLineIn], Field(min_length=1, max_length=1000)]


class TransferRequest(_Model):
    to_store: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    ref: FreeText
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=1000)]


class FulfilmentRequest(_Model):
    reservation_id: Ident
    lines: Annotated[list[LineIn], Field(min_length=1, max_length=1000)] | None = None
    """Omitted: hand over everything still reserved."""


class BasketItemIn(_Model):
    code: Code | None = None
    sku: Sku | None = None
    qty: Qty | None = None  # default 1, or what a weight/price barcode says

    @model_validator(mode="after")
    def _one_key(self) -> BasketItemIn:
        if (self.code is None) == (self.sku is None):
            raise ValueError("give exactly one of code or sku")
        return self


class CheckoutRequest(_Model):
    payments: Annotated[list[PaymentIn], Field(max_length=20)] | None = None
    """Omitted: one payment of the total with the configured default method."""
    customer: Ident | None = None


class SessionOpenRequest(_Model):
    kind: Literal["receive", "count"]
    terminal: Terminal
    ref: FreeText | None = None
    count_id: Ident | None = None


class SessionScanIn(_Model):
    code: Code | None = None
    sku: Sku | None = None
    qty: Qty = 1

    @model_validator(mode="after")
    def _one_key(self) -> SessionScanIn:
        if (self.code is None) == (self.sku is None):
            raise ValueError("give exactly one of code or sku")
        return self
