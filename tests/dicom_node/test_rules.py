"""Routing rules as a pure function of config and series facts."""

from __future__ import annotations

from dicom_node.config import Config
from dicom_node.rules import SeriesFacts, route


def _config(tmp_path) -> Config:
    return Config.embedded_defaults(tmp_path, destinations={
        "pacs": {"ae_title": "PACS", "host": "127.0.0.1", "port": 4242},
        "research": {"ae_title": "RES", "host": "127.0.0.1", "port": 4243},
    }, rules=[
        {"name": "ct-body", "match": {"modality": "CT", "series_description": "abdo|body",
                                      "calling_ae": "SCANNER"},
         "recipe": "ct-to-pet", "destinations": ["pacs", "research"]},
        {"name": "mr-brain", "match": {"modality": "MR", "body_part": "BRAIN"},
         "recipe": "mr-to-pet", "destinations": ["pacs"]},
        {"name": "ct-wrong-recipe", "match": {"modality": "CT", "called_ae": "OTHER"},
         "recipe": "mr-to-pet"},
    ])


def test_first_matching_rule_wins(tmp_path):
    cfg = _config(tmp_path)
    d = route(cfg, SeriesFacts("CT", "CT Abdomen 3mm", "scanner", "VPET", "ABDOMEN"))
    assert d is not None and d.rule == "ct-body" and d.recipe == "ct-to-pet"
    assert d.destinations == ("pacs", "research")
    d = route(cfg, SeriesFacts("MR", "T1 MPRAGE", "ANY", "VPET", "brain"))
    assert d is not None and d.rule == "mr-brain"


def test_no_match(tmp_path):
    cfg = _config(tmp_path)
    assert route(cfg, SeriesFacts("CT", "Head", "SCANNER", "VPET", "HEAD")) is None
    assert route(cfg, SeriesFacts("CT", "Abdomen", "OTHER_AE", "VPET", "ABDOMEN")) is None
    assert route(cfg, SeriesFacts("PT", "body", "SCANNER", "VPET", "")) is None
    # a rule whose recipe expects another modality is skipped
    assert route(cfg, SeriesFacts("CT", "x", "X", "OTHER", "")) is None


def test_empty_rules_match_nothing(tmp_path):
    assert route(Config.embedded_defaults(tmp_path), SeriesFacts("CT")) is None
