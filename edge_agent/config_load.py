"""Find, read and validate the agent's configuration file into a :class:`Config`.

Where the file is: ``--config``, else ``$EDGE_AGENT_CONFIG``, else
``/etc/edge-agent/config.toml``. Every validation error is reported at once with the
file, the key path and what was expected (never a secret's value).
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_agent.config import Config
from edge_agent.config_secrets import strip_inline_secrets
from edge_agent.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/edge-agent/config.toml")
CONFIG_ENV = "EDGE_AGENT_CONFIG"
_SECRET_WORDS = ("password", "token", "secret", "key")


def resolve_path(explicit: Path | str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_config(path: Path | str | None = None) -> Config:
    """Read and validate the TOML file; raise ConfigError listing every problem."""
    source = resolve_path(path)
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{source}: no such configuration file (create one with `edge-agent init`, or "
            f"pass --config / set {CONFIG_ENV})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    return parse_config(raw, source)


def parse_config(raw: dict[str, Any], source: Path) -> Config:
    cleaned, problems = strip_inline_secrets(raw)
    config: Config | None = None
    try:
        config = Config.model_validate(cleaned)
    except ValidationError as exc:
        problems += [_describe(error) for error in exc.errors()]
    if problems or config is None:
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the configuration",
                          problems)
    return config.model_copy(update={"source": source})


def _describe(error: Any) -> str:
    loc = [str(part) for part in error["loc"]]
    # Drop the discriminator tag pydantic inserts into union paths (devices.0.serial_scanner.port).
    if len(loc) >= 3 and loc[0] == "devices" and loc[2] in {
        "serial_scanner", "hid_scanner", "em4100", "uhf", "ble_beacon", "door_counter",
    }:
        del loc[2]
    path = ".".join(f"[{part}]" if part.isdigit() else part for part in loc).replace(".[", "[")
    message = str(error["msg"])
    shown = ""
    if error["type"] not in {"missing"} and not any(w in path.lower() for w in _SECRET_WORDS):
        value = error.get("input")
        if isinstance(value, str | int | float | bool | Decimal) and len(repr(value)) < 80:
            shown = f" (got {value!r})"
    return f"{path or '(top level)'}: {message}{shown}"
