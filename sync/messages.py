"""Pydantic models of every PROTOCOL v1 message (§4-§8), and the topic names of §3.

Receivers validate with these models after :func:`sync.wire.loads` and the size check.
Models ignore unknown fields (§2: "Unknown fields are ignored"), except that the batch
items keep their raw dicts so unknown event/command *types* are stored and passed on.
The JSON Schemas in ``docs/protocol.md`` are generated from these classes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from sync.wire import MAX_BATCH_ITEMS, MAX_SAFE_INT

StoreId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:/-]{1,64}$")]
Money = Annotated[str, StringConstraints(pattern=r"^-?[0-9]+(\.[0-9]+)?$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
SafeInt = Annotated[int, Field(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT, strict=True)]
Seq = Annotated[int, Field(ge=1, le=MAX_SAFE_INT, strict=True)]
Watermark = Annotated[int, Field(ge=0, le=MAX_SAFE_INT, strict=True)]
Timestamp = str


# defer_build: a model's validator is built on its first use, not at import. A store
# parses acks and commands, central parses events, health and digests: each side then
# builds only its own (~30 ms of start-up CPU saved on the store).
class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    v: Literal[1] = 1

    @field_validator("v", mode="before")
    @classmethod
    def _integer_one(cls, value: Any) -> Any:
        # pydantic matches Literal[1] by equality, and JSON true and 1.0 equal 1 in Python
        if type(value) is not int:
            raise ValueError("v must be the integer 1")
        return value


class Delta(BaseModel):
    """One entry of a ``stock`` or ``reserve`` list."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    sku: Sku
    delta: SafeInt


class Event(BaseModel):
    """One event as recorded by the store (§4.2). ``data`` is free-form per type."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)
    seq: Seq
    id: str
    type: str
    ts: Timestamp
    data: dict[str, Any] = Field(default_factory=dict)
    stock: list[Delta] = Field(default_factory=list)
    reserve: list[Delta] = Field(default_factory=list)


RawItems = Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_BATCH_ITEMS)]


def _contiguous_items(items_field: str, key: str) -> Any:
    """A validator of a batch's raw items: each carries ``key`` = the previous one's + 1."""

    def check(cls: type[BaseModel], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        _check_contiguous([item.get(key) for item in items], key)
        return items

    return field_validator(items_field)(classmethod(check))


def _item_seq(items: list[dict[str, Any]], index: int, key: str) -> int:
    return int(items[index][key])


class EventBatch(_Message):
    """``…/events``: events of one epoch with strictly increasing, contiguous seqs.

    ``events`` stays a list of raw objects: central hashes each one's canonical form
    and must quarantine (not drop) an event whose ``stock`` list is malformed.
    """

    store: StoreId
    epoch: str = Field(min_length=1, max_length=64)
    events: RawItems
    _contiguous = _contiguous_items("events", "seq")

    @property
    def first_seq(self) -> int:
        return _item_seq(self.events, 0, "seq")

    @property
    def last_seq(self) -> int:
        return _item_seq(self.events, -1, "seq")


class EventAck(_Message):
    """``…/events/ack`` (retained): central applied the epoch through ``through_seq``."""

    store: StoreId
    epoch: str = Field(min_length=1, max_length=64)
    through_seq: Watermark
    ts: Timestamp


class Command(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)
    cseq: Seq
    id: str
    type: str
    ts: Timestamp
    data: dict[str, Any] = Field(default_factory=dict)
    stock: list[Delta] = Field(default_factory=list)
    reserve: list[Delta] = Field(default_factory=list)


class CommandBatch(_Message):
    """``…/commands``: commands with contiguous cseqs; items stay raw for quarantine."""

    store: StoreId
    commands: RawItems
    _contiguous = _contiguous_items("commands", "cseq")

    @property
    def first_cseq(self) -> int:
        return _item_seq(self.commands, 0, "cseq")

    @property
    def last_cseq(self) -> int:
        return _item_seq(self.commands, -1, "cseq")


class CommandAck(_Message):
    """``…/commands/ack`` (retained): the store applied commands through ``through_cseq``."""

    store: StoreId
    epoch: str
    through_cseq: Watermark
    ts: Timestamp


class Status(_Message):
    """``…/status`` (retained): birth (``online``) or death/will (``offline``), §6."""

    store: StoreId
    state: Literal["online", "offline"]
    epoch: str
    boot_id: str
    last_seq: Watermark | None = None
    applied_cseq: Watermark | None = None
    agent: str | None = None
    ts: Timestamp | None = None


class Digest(_Message):
    """``…/digest``: stock digest (§7)."""

    store: StoreId
    epoch: str
    through_seq: Watermark
    through_cseq: Watermark
    skus: Watermark
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class DeviceCounts(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    connected: Watermark
    total: Watermark


class Health(_Message):
    """``…/health`` (retained), §8."""

    store: StoreId
    ts: Timestamp
    agent: str
    uptime_s: Watermark
    outbox_pending: Watermark
    outbox_oldest_age_s: Watermark
    last_ack_at: Timestamp | None
    applied_cseq: Watermark | None
    db_bytes: Watermark
    wal_bytes: Watermark
    disk_free_bytes: Watermark
    clock_offset_ms: SafeInt | None
    devices: DeviceCounts


class DeviceState(_Message):
    """``…/devices/{device}`` (retained), §8."""

    store: StoreId
    device: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    kind: str
    state: Literal["connected", "disconnected", "error"]
    port: str
    since: Timestamp
    reads: Watermark
    errors: Watermark
    detail: str


class CatalogItem(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)
    sku: Sku
    name: str
    gtins: list[str] = Field(default_factory=list)
    price: Money
    currency: Currency
    uom: Literal["unit", "g", "ml"] = "unit"
    active: bool = True


class SnapshotStock(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    sku: Sku
    on_hand: SafeInt
    reserved: SafeInt


class ReservationLine(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    sku: Sku
    qty: Annotated[int, Field(gt=0, le=MAX_SAFE_INT, strict=True)]


class SnapshotReservation(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    reservation_id: str
    order_ref: str
    lines: list[ReservationLine]
    expires_at: Timestamp | None = None
    cancel_requested: bool = False


class SnapshotCountRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    count_id: str
    skus: list[Sku]


class Snapshot(_Message):
    """``GET {central_url}/v1/stores/{store}/snapshot`` response, §5.3."""

    store: StoreId
    through_cseq: Watermark
    epochs: dict[str, Watermark]
    catalog: list[CatalogItem]
    stock: list[SnapshotStock]
    reservations: list[SnapshotReservation]
    count_requests: list[SnapshotCountRequest]
    recalls: list[dict[str, Any]] | None = None
    """[extension] The store's active recalls (``recall.add`` data, docs/protocol.md
    "Recalls"); absent from an older central, and then the store keeps its own."""


def _check_contiguous(values: list[Any], name: str) -> None:
    if not values:
        raise ValueError("empty batch")
    for index, value in enumerate(values):
        if type(value) is not int or not 1 <= value <= MAX_SAFE_INT:
            raise ValueError(f"item {index}: {name} {value!r} is not a positive integer")
        if index and value != values[index - 1] + 1:
            raise ValueError(f"item {index}: {name} {value} does not follow {values[index - 1]}")


class Topics:
    """Topic names of §3 for one store under ``{root}/v1/stores/{store}``."""

    def __init__(self, root: str, store: str) -> None:
        self.base = f"{root}/v1/stores/{store}"
        self.status = f"{self.base}/status"
        self.events = f"{self.base}/events"
        self.events_ack = f"{self.base}/events/ack"
        self.commands = f"{self.base}/commands"
        self.commands_ack = f"{self.base}/commands/ack"
        self.digest = f"{self.base}/digest"
        self.health = f"{self.base}/health"

    def device(self, name: str) -> str:
        return f"{self.base}/devices/{name}"


def store_from_topic(root: str, topic: str) -> tuple[str, str] | None:
    """Split ``{root}/v1/stores/{store}/{rest}`` into (store, rest), or None."""
    prefix = f"{root}/v1/stores/"
    if not topic.startswith(prefix):
        return None
    store, _, rest = topic[len(prefix):].partition("/")
    if not store or not rest:
        return None
    return store, rest


MESSAGE_MODELS: dict[str, type[BaseModel]] = {
    "status": Status,
    "events": EventBatch,
    "events/ack": EventAck,
    "commands": CommandBatch,
    "commands/ack": CommandAck,
    "digest": Digest,
    "health": Health,
    "devices/{device}": DeviceState,
    "snapshot (HTTP)": Snapshot,
    "event (item)": Event,
    "command (item)": Command,
}
