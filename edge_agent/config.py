"""The agent's configuration model: one pydantic model per section of the TOML file.

Finding and reading the file is :mod:`edge_agent.config_load`; secrets (never written in
the file, each read from ``*_file`` or a systemd credential) :mod:`edge_agent.config_secrets`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from drivers.config import (
    BleBeaconSettings,
    DoorCounterSettings,
    Em4100Settings,
    HidScannerSettings,
    SerialScannerSettings,
    UhfSettings,
)
from edge_agent.config_secrets import no_inline_secret, read_secret
from edge_agent.till_config import CUSTOM_REGION, ExpiryPolicy, RcnLayoutEntry, check_rcn_region
from sync.broker import parse_broker_url
from sync.errors import LinkError

StoreId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Seconds = Annotated[float, Field(gt=0, le=10 * 365 * 86400)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SecretSection(_Section):
    """A section holding one secret ``<name>``: never inline, read from ``<name>_file`` or
    the systemd credential ``<name>_credential`` (``SECRET`` = name, what it is)."""

    SECRET: ClassVar[tuple[str, str]]

    @model_validator(mode="before")
    @classmethod
    def _refuse_inline_secret(cls, data: Any) -> Any:
        name = cls.SECRET[0]
        return no_inline_secret(data, name, f"{name}_file")

    @model_validator(mode="after")
    def _load_secret(self) -> Self:
        name, what = self.SECRET
        if getattr(self, name) is None:
            secret = read_secret(getattr(self, f"{name}_file"),
                                 getattr(self, f"{name}_credential"), what)
            object.__setattr__(self, name, secret)
        return self


class StoreSection(_Section):
    id: StoreId
    name: str = ""
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    timezone: str = "UTC"
    rcn_region: str = "se"
    """Rules for in-store variable-measure EAN-13s (prefixes 02, 20-29): a region biip
    supports (dk, ee, fi, de, gb, lv, lt, no, se) or ``custom`` with ``rcn_layouts``."""
    rcn_layouts: tuple[RcnLayoutEntry, ...] = ()
    """The store's own layouts; they win over the region's rules for their prefixes."""
    expiry_policy: ExpiryPolicy = "block"
    """A sale of an item past its expiry date (GS1 AI 17), in the store's time zone."""
    best_before_policy: ExpiryPolicy | None = None
    """The same for a best-before date (AI 15); default: as ``expiry_policy``."""
    markdown_days: Annotated[int, Field(ge=0, le=365)] = 0
    """Warn (``expiry_markdown``) this many days before the date, to mark the item down."""
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    """ISO 3166 alpha-2: the default region of a phone number typed at the till in national
    form (``06 12 34 56 78`` with ``FR``). Unset: numbers must be typed as ``+…``."""
    returns_without_receipt: bool = True
    low_stock_threshold: Annotated[int, Field(ge=0)] = 2
    opening_hours: tuple[str, str] = ("08:00", "20:00")
    """Local opening and closing time; footfall periods inside it are written even when empty."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone (e.g. Europe/Paris)") from None
        return value

    @field_validator("rcn_region")
    @classmethod
    def _region(cls, value: str) -> str:
        return check_rcn_region(value)

    @model_validator(mode="after")
    def _custom_region(self) -> StoreSection:
        if self.rcn_region == CUSTOM_REGION and not self.rcn_layouts:
            raise ValueError("rcn_region 'custom' needs at least one [[store.rcn_layouts]]")
        return self

    @field_validator("opening_hours")
    @classmethod
    def _hours(cls, value: tuple[str, str]) -> tuple[str, str]:
        for text in value:
            hours, _, minutes = text.partition(":")
            if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and
                    int(minutes) < 60 and len(minutes) == 2):
                raise ValueError(f"{text!r} is not a HH:MM time")
        return value


class DatabaseSection(_Section):
    path: Path = Path("/var/lib/edge-agent/ledger.db")
    event_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    """Acknowledged events are kept this long for audit (must exceed central's recovery point)."""
    min_free_bytes: Annotated[int, Field(ge=0)] = 200 * 1024 * 1024
    """Below this free space, raw presence processing is shed (sales never are)."""


class MqttSection(_SecretSection):
    SECRET = ("password", "MQTT password")

    url: str = "mqtt://localhost:1883"
    username: str | None = None
    """Defaults to the store id (PROTOCOL §9)."""
    password_file: Path | None = None
    password_credential: str | None = "mqtt-password"  # noqa: S105 - a name, not a value
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_file: Path | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    root: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "retail"
    protocol: Literal["5", "3.1.1"] = "5"
    """MQTT version: ``3.1.1`` for a broker without MQTT 5 (NATS server's MQTT support)."""
    password: SecretStr | None = Field(default=None, exclude=True)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        try:
            parse_broker_url(value)  # what the link will accept, refused the same way
        except LinkError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _client_pair(self) -> MqttSection:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        return self


class CentralSection(_SecretSection):
    SECRET = ("token", "central token")

    url: str | None = None
    """Base URL of central's HTTP API, for the snapshot (PROTOCOL §5.3)."""
    token_file: Path | None = None
    token_credential: str | None = "central-token"  # noqa: S105 - a name, not a value
    ca_file: Path | None = None
    timeout_s: Seconds = 10.0
    token: SecretStr | None = Field(default=None, exclude=True)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class SyncSection(_Section):
    resend_after_s: Seconds = 10.0
    window_messages: Annotated[int, Field(ge=1, le=20)] = 8
    """MQTT messages in flight at once (each carries many events; keep it small)."""
    batch_max_events: Annotated[int, Field(ge=1, le=1000)] = 1000
    # 70,000: one event of the 64 KiB maximum plus the batch envelope must always fit
    batch_max_bytes: Annotated[int, Field(ge=70_000, le=1024 * 1024)] = 1024 * 1024
    digest_interval_s: Seconds = 300.0
    health_interval_s: Seconds = 60.0
    backoff_initial_s: Seconds = 1.0
    backoff_max_s: Seconds = 120.0
    probe_interval_s: Seconds = 1.0
    """While the broker is away, a bare TCP probe every probe/2..probe seconds."""
    reconnect_spread_s: Annotated[float, Field(ge=0, le=60)] = 0.5
    """Once the probe succeeds, reconnect after a random 0..spread seconds."""


class TcpListen(_SecretSection):
    SECRET = ("token", "API token")

    host: Literal["127.0.0.1", "::1", "localhost"] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)]
    token_file: Path | None = None
    token_credential: str | None = "api-token"  # noqa: S105 - a name, not a value
    token: SecretStr | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _token_required(self) -> TcpListen:
        if self.token is None:
            raise ValueError("a TCP listener needs a bearer token (token_file or credential)")
        return self


class ApiSection(_Section):
    socket: Path = Path("/run/edge-agent/api.sock")
    socket_mode: Annotated[str, Field(pattern=r"^0?[0-7]{3}$")] = "0660"
    socket_group: str | None = None
    tcp: TcpListen | None = None
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 256 * 1024


class Routing(BaseModel):
    """How the agent uses a device's events (drivers never see these)."""

    mode: Literal["sale", "receive", "count", "lookup", "pick"] | None = None
    terminal: str | None = None
    role: Literal["door", "presence", "inventory"] | None = None
    """``inventory``: a UHF reader counting merchandise in ``zone`` (edge_agent.rfid)."""
    zone: Annotated[str, Field(min_length=1, max_length=64)] = "entrance"

    @model_validator(mode="after")
    def _inventory_needs_uhf(self) -> Routing:
        if self.role != "inventory":
            return self
        if getattr(self, "kind", None) != "uhf":
            raise ValueError('role "inventory" needs a UHF reader (kind = "uhf"): only UHF '
                             "readers decode merchandise tags (SGTIN-96)")
        if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.zone) is None:
            raise ValueError(f"zone {self.zone!r} of an inventory reader must be 1-64 of "
                             "[A-Za-z0-9_-] (counts name their zones in the API)")
        return self


class SerialScannerDevice(SerialScannerSettings, Routing):
    pass


class HidScannerDevice(HidScannerSettings, Routing):
    pass


class Em4100Device(Em4100Settings, Routing):
    pass


class UhfDevice(UhfSettings, Routing):
    pass


class BleBeaconDevice(BleBeaconSettings, Routing):
    pass


class DoorCounterDevice(DoorCounterSettings, Routing):
    pass


DeviceConfig = Annotated[
    SerialScannerDevice | HidScannerDevice | Em4100Device | UhfDevice | BleBeaconDevice
    | DoorCounterDevice,
    Field(discriminator="kind"),
]


class ControlBarcodes(_Section):
    """Barcodes that steer scan-only modes instead of naming an item."""

    checkout: str = "CTL-CHECKOUT"
    cancel: str = "CTL-CANCEL"
    void_line: str = "CTL-VOID"
    quantity_prefix: str = "CTL-QTY-"
    close_session: str = "CTL-CLOSE"
    order_prefix: str = "ORD:"  # pick mode: ORD:<order id> on the order slip
    default_payment: str = "cash"


class VisitorsSection(_Section):
    enabled: bool = True
    absence_gap_s: Seconds = 300.0
    key_rotation_s: Seconds = 86400.0
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    footfall_period_s: Annotated[int, Field(ge=60, le=86400)] = 900
    presence_dedup_s: Seconds = 10.0


class RfidSection(_Section):
    """Item-level RFID (``edge_agent.rfid``): counts, sold serials, exit alerts."""

    exit_grace_min: Annotated[float, Field(ge=0, le=24 * 60)] = 10.0
    """No ``unsold_tag_exit`` alert for a tag returned this recently, and at most one
    alert per tag in this window."""
    exit_alert_off_floor: bool = True
    """Also alert for a tag this store never saw on its floor (false: a chain whose
    shoppers carry items bought at other stores through the door)."""
    exit_hold_s: Annotated[float, Field(ge=0, le=60)] = 2.0
    """A door sighting is judged this long after it, so a sale being rung up at a till
    beside the door commits first."""
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 90
    """Seen-on-floor and sold EPCs older than this are forgotten."""
    max_floor_epcs: Annotated[int, Field(ge=1000, le=50_000_000)] = 2_000_000
    max_sold_epcs: Annotated[int, Field(ge=1000, le=50_000_000)] = 2_000_000
    max_count_epcs: Annotated[int, Field(ge=100, le=10_000_000)] = 1_000_000
    """Distinct EPCs one open count holds in memory (further new tags are counted as
    ``overflow`` and the count refuses to close as complete)."""
    count_barcode: Annotated[str, Field(min_length=3, max_length=64)] = "CTL-RFID-COUNT"
    """Scanned on any scanner: open a store count; ``CTL-RFID-COUNT:ZONE`` one zone."""
    close_barcode: Annotated[str, Field(min_length=3, max_length=64)] = "CTL-RFID-CLOSE"
    """Close the count the last count barcode opened."""
    cancel_barcode: Annotated[str, Field(min_length=3, max_length=64)] = "CTL-RFID-CANCEL"


class LoggingSection(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(_Section):
    store: StoreSection
    database: DatabaseSection = DatabaseSection()
    mqtt: MqttSection = MqttSection()
    central: CentralSection = CentralSection()
    sync: SyncSection = SyncSection()
    api: ApiSection = ApiSection()
    devices: list[DeviceConfig] = Field(default_factory=list)
    controls: ControlBarcodes = ControlBarcodes()
    visitors: VisitorsSection = VisitorsSection()
    rfid: RfidSection = RfidSection()
    logging: LoggingSection = LoggingSection()
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_devices(self) -> Config:
        seen: set[str] = set()
        for device in self.devices:
            if device.name in seen:
                raise ValueError(f"device name {device.name!r} is used twice")
            seen.add(device.name)
        return self

    @property
    def mqtt_username(self) -> str:
        return self.mqtt.username or self.store.id

    def redacted(self) -> dict[str, Any]:
        """The configuration as plain data, secrets shown only as set/unset."""
        data = self.model_dump(mode="json", exclude={"source"})
        for section, secret in (("mqtt", self.mqtt.password), ("central", self.central.token)):
            data[section]["secret"] = "set (redacted)" if secret is not None else "not set"
        return data
