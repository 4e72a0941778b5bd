"""Configuration validation (all errors at once, secrets redacted), catalog splitting, the
generated JSON Schemas, and the example configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.config import load_config, store_partition
from central.errors import ConfigError
from central.queries import catalog_commands
from central.schemas import generate_schemas
from sync.wire import MAX_ITEM_BYTES, canonical_json

REPO = Path(__file__).resolve().parents[2]


def test_all_errors_reported_at_once_without_echoing_values(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('database_url = "mysql://u:hunter2@x/db"\nresend_after = -1\n'
                    'unknown_key = 1\n[broker]\nurl = "http://hunter2@x"\n'
                    '[http]\nlisten = "nope"\n[partition]\ncount = 2\nindex = 5\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    for key in ("database_url", "resend_after", "unknown_key", "broker.url", "http.listen",
                "partition"):
        assert key in text
    assert "hunter2" not in text


def test_redacted_and_example_config_is_valid() -> None:
    config = load_config(REPO / "config" / "central.example.toml")
    assert config.root == "retail"
    other = config.model_copy(update={"database_url": "postgresql://c:s3cret@db/central"})
    assert "s3cret" not in str(other.redacted())


def test_partitions_cover_every_store_once() -> None:
    stores = [f"S{i:04d}" for i in range(2000)]
    counts = [0, 0, 0, 0]
    for store in stores:
        counts[store_partition(store, 4)] += 1
    assert sum(counts) == 2000
    assert min(counts) > 400  # no partition starves


def test_catalog_split_respects_the_item_limit() -> None:
    items = [{"sku": f"S-{i}", "name": "n" * 900, "price": "1.00", "currency": "EUR"}
             for i in range(400)]
    specs = catalog_commands(items, [f"R-{i}" for i in range(3000)])
    upserts = [s for s in specs if s["type"] == "catalog.upsert"]
    removes = [s for s in specs if s["type"] == "catalog.remove"]
    assert len(upserts) > 1
    assert len(removes) > 1
    for spec in specs:
        command = {"cseq": 2**53 - 1, "id": "0" * 36, "type": spec["type"],
                   "ts": "2026-11-25T09:15:02.123Z", "data": spec["data"], "stock": [],
                   "reserve": []}
        assert len(canonical_json(command)) <= MAX_ITEM_BYTES
    assert [i["sku"] for s in upserts for i in s["data"]["items"]] == [i["sku"] for i in items]
    with pytest.raises(ValueError, match="exceeds"):
        catalog_commands([{"sku": "X", "name": "n" * 70000, "price": "1", "currency": "EUR"}],
                         [])


def test_committed_schemas_match_the_models() -> None:
    generated = generate_schemas()
    directory = REPO / "docs" / "schemas"
    committed = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.json")}
    assert committed == generated, "run: edge-central schemas --out docs/schemas"


def test_unreadable_password_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[broker]\npassword_file = "{tmp_path}/missing"\n')
    config = load_config(path)
    with pytest.raises(ConfigError, match="password_file"):
        config.broker.password()
    (tmp_path / "missing").write_text("s3cret\n")
    secret = config.broker.password()
    assert secret is not None
    assert secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(secret)
