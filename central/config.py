"""Configuration of ``edge-central`` (TOML, pydantic-validated, every error at once).

Secrets never appear in the file itself: the broker password and the admin token are read
from files (or environment variables), store tokens from a directory of ``{store}.token``
files or ``EDGE_CENTRAL_STORE_TOKEN_{STORE}`` variables. Validation errors never echo
input values, and ``repr`` of the secrets is redacted.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any
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
from central.omni_config import OmniSettings
from sync.wire import STORE_RE

_STRICT = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)


class BrokerSettings(BaseModel):
    model_config = _STRICT
    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = "central"
    password_file: Path | None = None
    client_id: str = "edge-central"
    keepalive: int = Field(default=30, ge=5, le=3600)
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

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
    admin_token_file: Path | None = None

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
    omni: OmniSettings = Field(default_factory=OmniSettings)

    @field_validator("database_url")
    @classmethod
    def _db(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

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

    def all_store_tokens(self) -> list[bytes]:
        out: list[bytes] = []
        if self.tokens_dir is not None and self.tokens_dir.is_dir():
            for path in self.tokens_dir.glob("*.token"):
                try:
                    token = path.read_bytes().strip()
                except OSError:
                    continue
                if token:
                    out.append(token)
        out.extend(v.encode() for k, v in os.environ.items()
                   if k.startswith("EDGE_CENTRAL_STORE_TOKEN_") and v)
        return out

    def admin_token(self) -> bytes | None:
        env = os.environ.get("EDGE_CENTRAL_ADMIN_TOKEN")
        if env:
            return env.encode()
        if self.admin_token_file is None:
            return None
        try:
            return self.admin_token_file.read_bytes().strip() or None
        except OSError:
            return None
