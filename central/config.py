"""Configuration of ``edge-central`` (TOML, pydantic-validated, every error at once).

Secrets never appear in the file itself: the broker password and the admin token are read
from files (or environment variables), store tokens from a directory of ``{store}.token``
files or ``EDGE_CENTRAL_STORE_TOKEN_{STORE}`` variables. Validation errors never echo
input values, and ``repr`` of the secrets is redacted.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from central.errors import ConfigError
from central.history_schema import HistorySettings
from central.omni_config import OmniSettings
from central.ownership_schema import OwnershipSettings
from sync.files import private_dir, write_secret
from sync.wire import STORE_RE

ADMIN_TOKEN_NAME = "admin.token"  # noqa: S105 - a file name, not a secret
ADMIN_TOKEN_ENV = "EDGE_CENTRAL_ADMIN_TOKEN"  # noqa: S105 - a variable name
_STRICT = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)


class BrokerSettings(BaseModel):
    model_config = _STRICT
    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = "central"
    password_file: Path | None = None
    # None: the username (the broker templates bind the client id to it anyway)
    client_id: str | None = None
    keepalive: int = Field(default=30, ge=5, le=3600)
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # "3.1.1" for brokers without MQTT 5 (NATS server's MQTT); README "Scale"
    protocol: Literal["5", "3.1.1"] = "5"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must look like mqtt://host:port or mqtts://host:port")
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def effective_client_id(self) -> str:
        return self.client_id or self.username or "edge-central"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts" or self.tls_ca_file is not None

    def password(self) -> SecretStr | None:
        env = os.environ.get("EDGE_CENTRAL_BROKER_PASSWORD")
        if env:
            return SecretStr(env)
        if self.password_file is None:
            return None
        try:
            return SecretStr(self.password_file.read_text().strip())
        except OSError as exc:
            raise ConfigError(f"broker.password_file: cannot read {self.password_file}: "
                              f"{exc.strerror}") from exc


class HttpSettings(BaseModel):
    model_config = _STRICT
    listen: str = "127.0.0.1:8480"
    store_tokens_dir: Path | None = None
    # None: {directory of the SQLite database}/admin.token, or $STATE_DIRECTORY/admin.token
    # (systemd); generated (0600) at the first start when absent. PostgreSQL deployments
    # outside systemd must name it.
    admin_token_file: Path | None = None
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (IP addresses
    # or networks, uvicorn's forwarded_allow_ips); empty: forwarded headers are ignored.
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class PartitionSettings(BaseModel):
    """Scale-out: this worker owns the stores whose hash falls in its partition."""

    model_config = _STRICT
    count: int = Field(default=1, ge=1, le=4096)
    index: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _index(self) -> PartitionSettings:
        if self.index >= self.count:
            raise ValueError("partition.index must be below partition.count")
        return self

    def owns(self, store: str) -> bool:
        if self.count == 1:
            return True
        return store_partition(store, self.count) == self.index


def store_partition(store: str, count: int) -> int:
    """Stable partition of a store id: first 8 bytes of SHA-256, modulo ``count``."""
    return int.from_bytes(hashlib.sha256(store.encode()).digest()[:8], "big") % count


class CentralConfig(BaseModel):
    model_config = _STRICT
    root: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "retail"
    database_url: str = "sqlite:///var/lib/edge-central/central.db"
    resend_after: float = Field(default=10.0, gt=0, le=3600)
    max_group_messages: int = Field(default=500, ge=1, le=100_000)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    partition: PartitionSettings = Field(default_factory=PartitionSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)  # central.history
    ownership: OwnershipSettings = Field(default_factory=OwnershipSettings)
    omni: OmniSettings = Field(default_factory=OmniSettings)

    @field_validator("database_url")
    @classmethod
    def _db(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @model_validator(mode="after")
    def _ownership(self) -> CentralConfig:  # central.ownership
        if self.ownership.enabled and not self.database_url.startswith(
                ("postgresql://", "postgres://")):
            raise ValueError("ownership needs a PostgreSQL database_url")
        if self.ownership.enabled and self.partition.count != 1:
            raise ValueError("use [ownership] or [partition], not both")
        return self

    def admin_token_path(self) -> Path | None:
        """Where the operator token lives (see ``HttpSettings.admin_token_file``)."""
        if self.http.admin_token_file is not None:
            return self.http.admin_token_file
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///")).parent / ADMIN_TOKEN_NAME
        state = os.environ.get("STATE_DIRECTORY")
        if state:
            return Path(state.split(":")[0]) / ADMIN_TOKEN_NAME
        return None

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with credentials in URLs masked."""
        data = self.model_dump(mode="json")
        parts = urlsplit(self.database_url)
        if parts.password:
            data["database_url"] = self.database_url.replace(parts.password, "***", 1)
        return data


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> CentralConfig:
    """Read and validate a TOML file; raise ConfigError listing every problem."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    for key, value in (overrides or {}).items():
        if value is not None:
            raw[key] = value
    try:
        return CentralConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"  {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError(f"{path or 'configuration'}: {len(problems)} problem(s)\n"
                          + "\n".join(problems)) from None


class TokenBook:
    """Bearer tokens: one per store (files ``{dir}/{store}.token`` or env
    ``EDGE_CENTRAL_STORE_TOKEN_{STORE}``) plus an operator token. Reloaded on every
    lookup miss so a new store's token works without a restart."""

    def __init__(self, tokens_dir: Path | None, admin_token_file: Path | None) -> None:
        self.tokens_dir = tokens_dir
        self.admin_token_file = admin_token_file

    def store_token(self, store: str) -> bytes | None:
        if STORE_RE.fullmatch(store) is None:
            return None
        env = os.environ.get(f"EDGE_CENTRAL_STORE_TOKEN_{store.upper().replace('-', '_')}")
        if env:
            return env.encode()
        if self.tokens_dir is None:
            return None
        path = self.tokens_dir / f"{store}.token"
        try:
            return path.read_bytes().strip() or None
        except OSError:
            return None

    def ensure_admin_token(self) -> Path | None:
        """Generate the operator token (0600, in a 0750 directory) when none exists; the
        token itself is never printed or logged. Returns the file newly written, if any."""
        if os.environ.get(ADMIN_TOKEN_ENV):
            return None
        path = self.admin_token_file
        if path is None:
            raise ConfigError("http.admin_token_file: needed with PostgreSQL outside systemd "
                              f"(or set {ADMIN_TOKEN_ENV}); operator endpoints always need "
                              "a token")
        try:
            if path.exists():
                if not path.read_bytes().strip():
                    raise ConfigError(f"http.admin_token_file: {path} is empty; delete it to "
                                      "have a new token generated")
                return None
            private_dir(path.parent)
            write_secret(path, secrets.token_urlsafe(32) + "\n")
        except OSError as exc:
            raise ConfigError(f"http.admin_token_file: cannot use {path}: "
                              f"{exc.strerror}") from exc
        return path

    def admin_token(self) -> bytes | None:
        env = os.environ.get(ADMIN_TOKEN_ENV)
        if env:
            return env.encode()
        if self.admin_token_file is None:
            return None
        try:
            return self.admin_token_file.read_bytes().strip() or None
        except OSError:
            return None
