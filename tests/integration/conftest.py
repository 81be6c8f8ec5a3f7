"""Fixtures for end-to-end tests: a node with worker processes running the real pipeline and
the shipped demo model, and a stand-in PACS (LocalPACS) or a real Orthanc as destination."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicom_node.config import Config
from dicom_node.local_pacs import LocalPACS
from dicom_node.node import Node
from tests.conftest import free_port
from training.phantoms.abdomen import make_ct_only


@pytest.fixture(autouse=True)
def _quiet_pynetdicom():
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


@dataclass
class Site:
    """A node and its destination, as one hospital would see them."""

    node: Node
    pacs: LocalPACS
    config: Config


def site_config(base: Path, pacs_port: int, **overrides) -> Config:
    """One CT rule to destination `pacs`; the paper's 2.5 SUV threshold, at which the phantom's
    20-30 mm liver lesions are hot (at 1.5 the whole liver is one region over the 100 ml cap)."""
    data = {
        "node": {"ae_title": "VPET", "port": free_port()},
        "allowed_peers": [{"ae_title": "SCANNER"}, {"ae_title": "STORESCU"},
                          {"ae_title": "ORTHANC"}],
        "destinations": {"pacs": {"ae_title": "LOCALPACS", "host": "127.0.0.1",
                                  "port": pacs_port}},
        "rules": [{"name": "ct", "match": {"modality": "CT"}, "recipe": "ct-to-pet",
                   "destinations": ["pacs"]}],
        "recipes": {"ct-to-pet": {"modality": "CT", "lesion_threshold": 2.5,
                                  "min_lesion_volume_ml": 0.05}},
        "series": {"timeout_s": 0.5},
        "workers": {"count": 1, "device": "cpu", "lease_s": 120, "poll_s": 0.1},
        "sender": {"retries": 1, "backoff_s": 0.1, "timeout_s": 10},
    }
    data.update(overrides)
    return Config.embedded_defaults(base, **data)


@pytest.fixture
def site(tmp_path):
    pacs = LocalPACS(tmp_path / "pacs", free_port()).start()
    config = site_config(tmp_path / "node", pacs.port)
    node = Node(config, tracker_interval_s=0.1).start()
    yield Site(node, pacs, config)
    node.stop()
    pacs.stop()


@pytest.fixture(scope="session")
def phantom_ct(tmp_path_factory) -> list[Path]:
    """A small abdomen CT with two liver lesions (24 x 96 x 96, 4.5 mm pixels)."""
    case = make_ct_only(tmp_path_factory.mktemp("phantom"), 3, ct_shape=(24, 96, 96),
                        n_lesions=2, diameter_range_mm=(20.0, 30.0))
    return case.ct_paths
