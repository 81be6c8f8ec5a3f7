"""Orthanc as the PACS: Orthanc sends a CT study to the node (C-STORE SCU), the node's results
come back into Orthanc, and Orthanc renders a preview of every SC and SEG frame."""

from __future__ import annotations

import pytest

from dicom_node.config import Config
from dicom_node.node import Node
from tests.conftest import free_port, require_tool
from tests.dicom_node.helpers import wait_for
from tests.integration.checks import PM, SC_MF, SEG, SR
from tests.integration.conftest import site_config
from tests.integration.orthanc import start_orthanc


@pytest.fixture
def orthanc_site(tmp_path):
    binary = require_tool("/usr/sbin/Orthanc")
    node_port = free_port()
    orthanc = start_orthanc(binary, tmp_path / "orthanc", free_port(), free_port(),
                            {"vpet": ["VPET", "127.0.0.1", node_port]})
    config: Config = site_config(
        tmp_path / "node", orthanc.dicom_port, node={"ae_title": "VPET", "port": node_port},
        destinations={"pacs": {"ae_title": "ORTHANC", "host": "127.0.0.1",
                               "port": orthanc.dicom_port}})
    node = Node(config, tracker_interval_s=0.1).start()
    yield orthanc, node
    node.stop()
    orthanc.stop()


def test_orthanc_routes_a_study_and_receives_the_results(orthanc_site, phantom_ct):
    orthanc, _node = orthanc_site
    for path in phantom_ct:
        orthanc.post("/instances", path.read_bytes())
    (study_id,) = orthanc.get("/studies")
    answer = orthanc.post("/modalities/vpet/store",
                          {"Resources": [study_id], "Synchronous": True})
    assert answer.get("FailedInstancesCount", 0) == 0, answer

    def result_classes():
        """SOP class -> series once every expected result is in Orthanc (they arrive one by
        one: waiting for a series count alone raced with the last object)."""
        classes = {}
        for s in orthanc.get(f"/studies/{study_id}/series"):
            instance = orthanc.get(f"/instances/{s['Instances'][0]}/tags?simplify")
            classes[instance["SOPClassUID"]] = s
        return classes if {PM, SEG, SC_MF, SR} <= set(classes) else None

    classes = wait_for(result_classes, timeout=300, poll=0.5)
    for sop_class in (SC_MF, SEG):
        (instance_id,) = classes[sop_class]["Instances"]
        frames = orthanc.get(f"/instances/{instance_id}/frames")
        assert len(frames) >= 1
        for frame in frames:
            status, kind = orthanc.get_status(f"/instances/{instance_id}/frames/{frame}/preview")
            assert (status, kind) == (200, "image/png"), (sop_class, frame)
