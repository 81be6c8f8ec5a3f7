"""Extended rules: all conditions, combinators, priority, reasons in words, `vpet rules test`,
`vpet config check` listing every invalid key."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from dicom_node.cli import app
from dicom_node.config import Config, parse_config
from dicom_node.rules import SeriesFacts, evaluate, explain, route
from pipeline.errors import ConfigError
from tests.conftest import make_tiny_ct

DESTS = {"pacs": {"ae_title": "PACS", "host": "127.0.0.1", "port": 4242}}
FACTS = SeriesFacts(modality="CT", series_description="CT Abdomen 3mm", calling_ae="SCANNER",
                    called_ae="VPET", body_part="ABDOMEN", source_address="10.1.2.3",
                    manufacturer="SIEMENS Healthineers", image_type=("ORIGINAL", "PRIMARY",
                                                                     "AXIAL"),
                    slice_count=120, slice_thickness=3.0)


def _cfg(tmp_path, rules) -> Config:
    return Config.embedded_defaults(tmp_path, destinations=DESTS, rules=rules)


def _why(match: dict, facts: SeriesFacts = FACTS) -> str | None:
    from dicom_node.rule_models import Match

    return explain(Match.model_validate(match), facts)


def test_every_condition_matches_and_fails_in_words():
    full = {"calling_ae": ["OTHER", "scanner"], "called_ae": "VPET",
            "source_address": "10.0.0.0/8", "modality": "CT", "body_part": "abdomen",
            "series_description": "abdo", "manufacturer": "^siemens", "image_type": "AXIAL",
            "slice_count": {"min": 50, "max": 400}, "slice_thickness": {"max": 5}}
    assert _why(full) is None
    assert _why({"calling_ae": "PACS"}) == "calling AE is 'SCANNER', rule wants PACS"
    assert "source address 10.1.2.3 is not in 192.168.0.0/16" == _why(
        {"source_address": "192.168.0.0/16"})
    assert _why({"manufacturer": "GE"}) == "manufacturer 'SIEMENS Healthineers' does not match /GE/"
    assert _why({"image_type": ["DERIVED"]}) == r"image type ORIGINAL\PRIMARY\AXIAL lacks DERIVED"
    assert _why({"slice_count": {"min": 200}}) == "slice count 120 is below 200"
    assert _why({"slice_thickness": {"max": 1.5}}) == "slice thickness 3 mm is above 1.5 mm"
    assert "series description 'CT Abdomen 3mm' does not match /head/" == _why(
        {"series_description": "head"})


def test_combinators_nest():
    assert _why({"any_of": [{"modality": "MR"}, {"all_of": [{"modality": "CT"},
                                                           {"body_part": "ABDOMEN"}]}]}) is None
    assert _why({"any_of": [{"modality": "MR"}, {"modality": "PT"}]}).startswith(
        "none of any_of holds")
    assert _why({"not": {"image_type": "LOCALIZER"}}) is None
    assert "'not' condition holds" in _why({"not": {"modality": "CT"}})
    assert _why({"all_of": [{"modality": "CT"}, {"not": {"slice_count": {"max": 10}}}]}) is None


def test_priority_then_file_order(tmp_path):
    cfg = _cfg(tmp_path, [
        {"name": "low", "match": {"modality": "CT"}, "recipe": "ct-to-pet"},
        {"name": "first-high", "priority": 5, "match": {"modality": "CT"},
         "recipe": "ct-to-pet", "destinations": ["pacs"]},
        {"name": "second-high", "priority": 5, "match": {"modality": "CT"},
         "recipe": "ct-to-pet"},
    ])
    decision = route(cfg, FACTS)
    assert decision is not None and decision.rule == "first-high"
    assert [r.name for r, _ in evaluate(cfg, FACTS)] == ["first-high", "second-high", "low"]


def test_recipe_modality_mismatch_is_a_reason(tmp_path):
    cfg = _cfg(tmp_path, [{"name": "mr", "match": {}, "recipe": "mr-to-pet"}])
    ((_, why),) = evaluate(cfg, FACTS)
    assert why == "recipe mr-to-pet expects MR, series is CT" and route(cfg, FACTS) is None


def test_config_lists_every_invalid_key():
    with pytest.raises(ConfigError) as info:
        parse_config({
            "node": {"port": "x"},
            "rules": [{"name": "a", "recipe": "nope", "destinations": ["gone"],
                       "match": {"manufacturer": "(", "slice_count": {"min": 5, "max": 1},
                                 "source_address": "not-an-ip", "nonsense": 1}}],
        })
    text = str(info.value)
    for key in ("node.port", "rules.0.recipe: unknown recipe 'nope'",
                "rules.0.destinations: unknown destination 'gone'", "rules.0.match.manufacturer",
                "rules.0.match.slice_count", "rules.0.match.source_address",
                "rules.0.match.nonsense"):
        assert key in text, key
    assert "7 errors" in text


def test_cli_config_check_prints_all_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"node": {"port": -1}, "rules": [
        {"name": "a", "recipe": "nope", "match": {"not": {"modality": 3.5, "x": 1}}}]}))
    result = CliRunner().invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2
    for key in ("node.port", "rules.0.recipe", "rules.0.match.not.x"):
        assert key in result.output, result.output


def test_cli_rules_test_explains_each_series(tmp_path):
    make_tiny_ct(tmp_path / "data" / "ct", shape=(3, 8, 8), series_description="CT Abdomen")
    (tmp_path / "data" / "notes.txt").write_text("not DICOM")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"destinations": DESTS, "rules": [
        {"name": "mr-brain", "match": {"modality": "MR"}, "recipe": "mr-to-pet"},
        {"name": "thin-ct", "priority": 2, "match": {"modality": "CT",
                                                      "slice_thickness": {"max": 1}},
         "recipe": "ct-to-pet"},
        {"name": "ct-body", "match": {"all_of": [{"modality": "CT"},
                                                  {"series_description": "abdo"}]},
         "recipe": "ct-to-pet", "destinations": ["pacs"]},
    ]}))
    result = CliRunner().invoke(app, ["rules", "test", str(tmp_path / "data"), "--config",
                                      str(cfg), "--json"])
    assert result.exit_code == 0, result.output
    (series,) = json.loads(result.output)
    assert series["rule"] == "ct-body" and series["facts"]["slice_count"] == 3
    reasons = {r["name"]: r["reason"] for r in series["rules"]}
    assert reasons["thin-ct"] == "slice thickness 3 mm is above 1 mm"
    assert reasons["mr-brain"] == "modality is 'CT', rule wants MR"
    assert reasons["ct-body"] == "matches"
    table = CliRunner().invoke(app, ["rules", "test", str(tmp_path / "data"), "-c", str(cfg)])
    assert table.exit_code == 0 and "ct-body" in table.output and "thin-ct" in table.output
