"""Fixtures for node tests: an embedded config under tmp_path and a running node."""

from __future__ import annotations

import logging

import pytest

from dicom_node.config import Config
from dicom_node.node import Node
from tests.conftest import free_port


@pytest.fixture(autouse=True)
def _quiet_pynetdicom():
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    yield


@pytest.fixture
def dest_port() -> int:
    return free_port()


@pytest.fixture
def make_config(tmp_path, dest_port):
    """Build an embedded config; keyword overrides replace top-level sections."""

    def _make(**overrides) -> Config:
        data = {
            "node": {"ae_title": "VPET", "port": free_port()},
            "series": {"timeout_s": 0.3},
            "workers": {"count": 0, "device": "cpu", "lease_s": 30, "poll_s": 0.1},
            "sender": {"retries": 0, "backoff_s": 0, "timeout_s": 5},
            "destinations": {"pacs": {"ae_title": "DEST", "host": "127.0.0.1",
                                      "port": dest_port}},
            "rules": [{"name": "ct", "match": {"modality": "CT"}, "recipe": "ct-to-pet",
                       "destinations": ["pacs"]}],
        }
        data.update(overrides)
        return Config.embedded_defaults(tmp_path / "node", **data)

    return _make


@pytest.fixture
def node(make_config):
    """A receive-only node (no worker processes), tracker polling fast."""
    n = Node(make_config(), tracker_interval_s=0.1).start()
    yield n
    n.stop()
