"""JSON Schemas of every PROTOCOL v1 message, generated from ``sync.messages``.

``edge-central schemas --out docs/schemas`` (or :func:`write_schemas`) writes one file per
message; the committed files in ``docs/schemas`` are checked against a fresh generation by
``tests/central/test_schemas.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sync.messages import MESSAGE_MODELS


def schema_file_name(name: str) -> str:
    """``events/ack`` → ``events-ack.json``, ``snapshot (HTTP)`` → ``snapshot-http.json``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{slug}.json"


def generate_schemas() -> dict[str, str]:
    """File name → schema text (stable: sorted keys, trailing newline)."""
    out: dict[str, str] = {}
    for name, model in MESSAGE_MODELS.items():
        schema: dict[str, Any] = model.model_json_schema(mode="validation")
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                  "$id": f"edge-agent/protocol/v1/{schema_file_name(name)}",
                  "x-message": name, **schema}
        out[schema_file_name(name)] = json.dumps(schema, indent=2, sort_keys=True,
                                                 ensure_ascii=False) + "\n"
    return out


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, text in generate_schemas().items():
        path = directory / file_name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
