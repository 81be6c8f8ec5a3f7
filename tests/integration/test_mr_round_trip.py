"""MR end to end on 127.0.0.1: a brain MR series -> node (rule modality MR -> mr-to-pet, the
shipped demo-mr-pet package chosen by modality) -> LocalPACS receives SUVR results."""

from __future__ import annotations

import pydicom
import pytest
from sqlalchemy import select

from dicom_node.db import Job
from dicom_node.local_pacs import LocalPACS
from dicom_node.node import Node
from dicom_node.scu import send_files
from pipeline.models.package import DEMO_MR_PACKAGE
from tests.conftest import free_port
from tests.dicom_node.helpers import wait_for
from tests.integration.conftest import site_config
from training.phantoms.brain import make_brain_case

DEADLINE_S = 300


@pytest.fixture
def mr_site(tmp_path):
    if not (DEMO_MR_PACKAGE / "manifest.json").is_file():
        pytest.fail(f"shipped MR package missing: {DEMO_MR_PACKAGE}")
    pacs = LocalPACS(tmp_path / "pacs", free_port()).start()
    config = site_config(
        tmp_path / "node", pacs.port,
        rules=[{"name": "mr", "match": {"modality": "MR"}, "recipe": "mr-to-pet",
                "destinations": ["pacs"]}],
        recipes={"mr-to-pet": {"modality": "MR", "units": "SUVR", "lesion_threshold": 1.4}})
    node = Node(config, tracker_interval_s=0.1).start()
    yield node, pacs
    node.stop()
    pacs.stop()


def test_mr_series_round_trip_gives_suvr_results(mr_site, tmp_path):
    node, pacs = mr_site
    mr = make_brain_case(tmp_path / "brain", 21, shape=(24, 32, 32)).mr_paths
    results = send_files(mr, "VPET", "127.0.0.1", node.port, calling_ae="SCANNER")
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]

    def done():
        with node.db.session() as s:
            job = s.scalars(select(Job).order_by(Job.id.desc())).first()
            return job if job is not None and job.state in ("done", "failed", "dead") else None

    job = wait_for(done, timeout=DEADLINE_S, poll=0.2)
    assert job.state == "done", job.reason
    wait_for(lambda: pacs.count() >= 3, timeout=30)
    datasets = [pydicom.dcmread(p) for p in pacs.received]
    study = pydicom.dcmread(mr[0]).StudyInstanceUID
    assert {ds.StudyInstanceUID for ds in datasets} == {study}
    pm = [ds for ds in datasets if ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"]
    assert len(pm) == 1
    rwvm = pm[0].SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert rwvm.LUTLabel == "SUVR"
    assert any(ds.Modality == "SR" for ds in datasets)
