"""``store.rcn_region`` validated against the regions biip supports, every shipped config
on a supported value, and a store's own variable-measure layout (issue 13)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from drivers.barcode import RCN_REGIONS
from edge_agent.cli.init_config import example_text
from edge_agent.config import StoreSection
from edge_agent.config_load import load_config
from edge_agent.errors import ConfigError
from edge_agent.retail.till import TillRules

REPO = Path(__file__).resolve().parents[2]


def test_the_default_and_every_shipped_config_use_a_supported_region() -> None:
    assert StoreSection(id="S1").rcn_region in RCN_REGIONS
    texts = {p.name: p.read_text() for p in (REPO / "config").glob("*.toml")}
    texts["init template"] = example_text()
    for name, text in texts.items():
        store = tomllib.loads(text).get("store")
        if store is None:
            continue  # not an agent config (central.example.toml)
        assert store.get("rcn_region", "se") in RCN_REGIONS, name
        StoreSection.model_validate(store)


@pytest.mark.parametrize("region", ["france", "great britain", "xx", ""])
def test_an_unsupported_region_is_a_config_error_naming_the_allowed_ones(
        tmp_path: Path, region: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(f'[store]\nid = "S1"\nrcn_region = "{region}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "rcn_region" in text
    assert "dk, ee, fi, de, gb, lv, lt, no, se" in text


def test_names_are_normalised_to_biip_codes() -> None:
    assert StoreSection(id="S1", rcn_region="SWEDEN").rcn_region == "se"
    assert StoreSection(id="S1", rcn_region="great_britain").rcn_region == "gb"


def test_a_custom_layout_for_a_region_without_library_rules(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[store]\nid = "S1"\nrcn_region = "custom"\n'
                    '[[store.rcn_layouts]]\nprefix = "23"\nmeasure = "weight"\n'
                    'value_digits = 5\ndecimals = 3\n'
                    '[[store.rcn_layouts]]\nprefix = "28"\nmeasure = "price"\n'
                    'value_digits = 4\ndecimals = 2\n')
    rules = TillRules.from_store(load_config(path).store)
    assert rules.region is None
    assert [(x.prefix, x.measure) for x in rules.layouts] == [("23", "weight"),
                                                              ("28", "price")]
    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\nid = "S1"\nrcn_region = "custom"\n')
    with pytest.raises(ConfigError, match="rcn_layouts"):
        load_config(bad)
    bad.write_text('[store]\nid = "S1"\n[[store.rcn_layouts]]\nprefix = "45"\n'
                   'measure = "weight"\nvalue_digits = 5\ndecimals = 3\n')
    with pytest.raises(ConfigError, match="prefix"):
        load_config(bad)
