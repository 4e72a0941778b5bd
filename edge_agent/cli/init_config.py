"""``edge-agent init``: write a configuration from the example, create the database.

The example (``config/agent.example.toml``) is found beside a source checkout, or in
``/opt/edge-agent/share/`` where ``systemd/install.sh`` puts it; a minimal built-in
template is used otherwise. Keys are replaced line by line inside their ``[section]``, so
the example's comments survive.
"""

from __future__ import annotations

import grp
import os
import re
import tomllib
from pathlib import Path

from edge_agent.config import Config
from edge_agent.config_load import parse_config

EXAMPLE_NAME = "agent.example.toml"
EXAMPLE_PLACES = (
    Path(__file__).resolve().parents[2] / "config" / EXAMPLE_NAME,
    Path("/opt/edge-agent/share") / EXAMPLE_NAME,
)
SERVICE_GROUP = "edge-agent"

BUILTIN_TEMPLATE = """\
# edge-agent configuration (written by `edge-agent init`).
# Secrets never go in this file: they come from files or systemd credentials.

[store]
id = "S000"
timezone = "UTC"
rcn_region = "se"

[database]
path = "/var/lib/edge-agent/ledger.db"

[mqtt]
url = "mqtts://mqtt.central.example:8883"
password_credential = "mqtt-password"

[central]
url = "https://central.example"
token_credential = "central-token"

[api]
socket = "/run/edge-agent/api.sock"
"""

DEVICES_HINT = """
# Devices: one [[devices]] table per scanner/reader (see docs/cli.md and
# `edge-agent devices test NAME`). Stable names come from systemd/99-edge-agent.rules:
#
# [[devices]]
# name = "till-1"
# kind = "serial_scanner"
# port = "/dev/edge-agent/till-1"
# suffix = "CR"
# mode = "sale"
# terminal = "T1"
"""

_SECTION = re.compile(r"^\s*\[\s*([A-Za-z0-9_.]+)\s*\]\s*(#.*)?$")
_ARRAY = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.]+)\s*\]\]\s*(#.*)?$")


def example_text() -> str:
    env = os.environ.get("EDGE_AGENT_EXAMPLE_CONFIG")
    for place in ((Path(env),) if env else ()) + EXAMPLE_PLACES:
        if place.is_file():
            return place.read_text(encoding="utf-8")
    return BUILTIN_TEMPLATE


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def drop_devices(text: str) -> str:
    """Remove the example's ``[[devices]]`` tables (their ports belong to another store)."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        array = _ARRAY.match(line)
        section = _SECTION.match(line)
        if array and array.group(1) == "devices":
            skipping = True
            continue
        if skipping and (array or section):
            skipping = False
        if not skipping:
            out.append(line)
    return "".join(out).rstrip("\n") + "\n" + DEVICES_HINT


def set_key(text: str, section: str, key: str, value: str) -> str:
    """Set ``key = "value"`` in ``[section]``: replace the line, or add it after the header."""
    lines = text.splitlines(keepends=True)
    current: str | None = None
    header_at: int | None = None
    key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
    new_line = f"{key} = {_toml_string(value)}\n"
    for i, line in enumerate(lines):
        m = _SECTION.match(line) or _ARRAY.match(line)
        if m:
            current = m.group(1) if _SECTION.match(line) else None
            if current == section:
                header_at = i
            continue
        if current == section and key_re.match(line):
            comment = ""
            if "#" in line.split("=", 1)[1]:
                after = line.split("=", 1)[1]
                # keep a trailing comment when the value is a plain quoted string
                m2 = re.match(r'\s*"(?:[^"\\]|\\.)*"\s*(#.*)$', after.rstrip("\n"))
                comment = f"  {m2.group(1)}" if m2 else ""
            lines[i] = new_line.rstrip("\n") + comment + "\n"
            return "".join(lines)
    if header_at is not None:
        lines.insert(header_at + 1, new_line)
        return "".join(lines)
    tail = "" if text.endswith("\n") or not text else "\n"
    return text + tail + f"\n[{section}]\n" + new_line


def render_config(
    store_id: str,
    *,
    mqtt_url: str | None = None,
    central_url: str | None = None,
    db_path: Path | None = None,
    socket_path: Path | None = None,
    store_name: str | None = None,
    template: str | None = None,
) -> str:
    text = drop_devices(template if template is not None else example_text())
    text = set_key(text, "store", "id", store_id)
    text = set_key(text, "store", "name", store_name or store_id)
    if mqtt_url:
        text = set_key(text, "mqtt", "url", mqtt_url)
    if central_url:
        text = set_key(text, "central", "url", central_url)
    if db_path:
        text = set_key(text, "database", "path", str(db_path))
    if socket_path:
        text = set_key(text, "api", "socket", str(socket_path))
    return text


def validate(text: str, source: Path) -> Config:
    """Parse and validate the rendered text (raises ConfigError)."""
    return parse_config(tomllib.loads(text), source)


def write_private(path: Path, text: str) -> list[str]:
    """Write ``path`` mode 0640 (group edge-agent when it exists and we may chgrp).

    Returns remarks about what could not be done.
    """
    remarks: list[str] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o640)
    try:
        gid = grp.getgrnam(SERVICE_GROUP).gr_gid
    except KeyError:
        remarks.append(f"no {SERVICE_GROUP!r} group here: {path} keeps your group")
    else:
        try:
            os.chown(tmp, -1, gid)
        except PermissionError:
            remarks.append(f"cannot give {path} to group {SERVICE_GROUP} (run as root)")
    os.replace(tmp, path)
    return remarks
