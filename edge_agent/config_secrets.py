"""Secrets of the configuration: read from a file or a systemd credential, never inline.

Each secret is held as ``SecretStr``; a secret written inline in the TOML file is refused
(one problem line each, so every other error of its section is still reported).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


def no_inline_secret(data: Any, key: str, file_key: str) -> Any:
    if isinstance(data, dict) and key in data:
        raise ValueError(
            f"do not write the {key} in the configuration; put it in a file ({file_key}) "
            "or a systemd credential (LoadCredential=)"
        )
    return data


def read_secret(path: Path | None, credential: str | None, what: str) -> SecretStr | None:
    """A secret from ``path``, else from the systemd credential named ``credential``."""
    if path is None and credential:
        directory = os.environ.get(CREDENTIALS_ENV)
        if directory and (Path(directory) / credential).is_file():
            path = Path(directory) / credential
    if path is None:
        return None
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not value:
        raise ValueError(f"the {what} file {path} is empty")
    return SecretStr(value)


# Secrets that must never be inline, by section path: (section keys, key, where it goes).
_INLINE_SECRETS = ((("mqtt",), "password", "password_file"),
                   (("central",), "token", "token_file"),
                   (("api", "tcp"), "token", "token_file"))


def strip_inline_secrets(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``raw`` without inline secrets, and one problem line for each.

    Refused here rather than in the section's own validator, which would stop at the
    secret and hide every other error of the same section.
    """
    problems: list[str] = []
    out = dict(raw)
    for keys, key, file_key in _INLINE_SECRETS:
        parent: dict[str, Any] = out
        parents: list[dict[str, Any]] = []
        for name in keys:
            child = parent.get(name)
            if not isinstance(child, dict):
                break
            child = dict(child)
            parent[name] = child
            parents.append(child)
            parent = child
        else:
            if key in parent:
                del parent[key]
                problems.append(
                    f"{'.'.join(keys)}.{key}: do not write the {key} in the configuration; "
                    f"put it in a file ({file_key}) or a systemd credential (LoadCredential=)")
    return out, problems
