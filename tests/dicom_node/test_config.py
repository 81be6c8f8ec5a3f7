"""Config validation: defaults, references, and errors that name the offending key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom_node.config import Config, load_config, parse_config
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_valid():
    cfg = load_config(ROOT / "config.example.yaml")
    assert cfg.destinations["pacs"].port == 4242
    assert cfg.rules[0].recipe == "ct-to-pet"
    assert cfg.storage.path.is_absolute()


def test_builtin_recipes_and_defaults(tmp_path):
    cfg = Config.embedded_defaults(tmp_path)
    assert cfg.recipe("ct-to-pet").units == "SUVbw" and cfg.recipe("ct-to-pet").modality == "CT"
    assert cfg.recipe("mr-to-pet").units == "SUVR" and cfg.recipe("mr-to-pet").modality == "MR"
    assert cfg.node.host == "127.0.0.1" and cfg.series.timeout_s == 5
    assert cfg.database_url == f"sqlite:///{(tmp_path / 'vpet.sqlite3').resolve()}"


@pytest.mark.parametrize(("data", "key"), [
    ({"destinations": {"pacs": {"ae_title": "P", "host": "h", "port": "x"}}},
     "destinations.pacs.port: Input should be a valid integer"),
    ({"node": {"port": 70000}}, "node.port"),
    ({"node": {"ae_title": "A" * 17}}, "node.ae_title"),
    ({"rules": [{"name": "r", "recipe": "nope"}]}, "rules.0.recipe: unknown recipe 'nope'"),
    ({"rules": [{"name": "r", "recipe": "ct-to-pet", "destinations": ["gone"]}]},
     "rules.0.destinations: unknown destination 'gone'"),
    ({"rules": [{"name": "r", "recipe": "ct-to-pet", "match": {"series_description": "("}}]},
     "rules.0.match.series_description"),
    ({"workers": {"device": "tpu"}}, "workers.device"),
    ({"sender": {"retries": "many"}}, "sender.retries"),
    ({"nodes": {}}, "nodes: Extra inputs are not permitted"),
])
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert key in str(info.value)


def test_load_config_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("destinations:\n  pacs: {ae_title: PACS, host: h, port: abc}\n")
    with pytest.raises(ConfigError, match=r"destinations\.pacs\.port"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("node: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_relative_paths_resolve_against_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("storage: {path: data}\nrecipes: {ct-to-pet: {modality: CT, model: pkg, "
                 "organ_mask: liver.nii.gz}, mr-to-pet: {modality: MR, "
                 "reference_region: atlas/cerebellum.nii.gz}}\n")
    cfg = load_config(f)
    assert cfg.storage.path == tmp_path / "data"
    assert cfg.recipe("ct-to-pet").model == tmp_path / "pkg"
    assert cfg.recipe("ct-to-pet").organ_mask == tmp_path / "liver.nii.gz"
    assert cfg.recipe("mr-to-pet").reference_region == tmp_path / "atlas" / "cerebellum.nii.gz"
    assert "mr-to-pet" in cfg.recipes  # built-ins stay
