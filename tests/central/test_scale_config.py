"""Configuration of issue 21's sections: ``[ownership]`` needs PostgreSQL and excludes the
static ``[partition]``; ``[history]`` bounds are checked; errors name the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.config import CentralConfig, load_config
from central.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "central.toml"
    path.write_text(text)
    return path


def test_ownership_needs_postgresql(tmp_path: Path) -> None:
    path = _write(tmp_path, 'database_url = "sqlite:///x.db"\n[ownership]\nenabled = true\n')
    with pytest.raises(ConfigError, match="ownership needs a PostgreSQL database_url"):
        load_config(path)


def test_ownership_and_static_partitions_exclude_each_other(tmp_path: Path) -> None:
    path = _write(tmp_path, 'database_url = "postgresql://c@db/central"\n'
                  "[partition]\ncount = 2\nindex = 0\n[ownership]\nenabled = true\n")
    with pytest.raises(ConfigError, match="not both"):
        load_config(path)


def test_history_and_ownership_bounds(tmp_path: Path) -> None:
    path = _write(tmp_path, "[history]\nretention_days = -1\n[ownership]\nlease_ttl_s = 0\n"
                  'worker_name = "bad name"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "history.retention_days" in text
    assert "ownership.lease_ttl_s" in text
    assert "ownership.worker_name" in text


def test_defaults_keep_everything_and_one_central() -> None:
    config = CentralConfig()
    assert config.history.retention_days == 0
    assert config.ownership.enabled is False
