"""No patient names or IDs in logs (logging.phi is false by default): a full store + job with
the real pipeline, every log record captured at DEBUG."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from dicom_node import scu
from dicom_node.db import Job
from dicom_node.node import Node
from dicom_node.worker import Worker
from tests.conftest import make_tiny_ct
from tests.dicom_node.helpers import stand_in_pacs, wait_for
from training.phantoms.dicom_writer import StudyInfo

pytest.importorskip("torch")


@pytest.mark.timeout(180)
def test_no_patient_name_or_id_in_logs(make_config, tmp_path, dest_port, caplog):
    from tests.dicom_node.test_round_trip import tiny_package

    package = tiny_package(tmp_path / "pkg")
    cfg = make_config(recipes={"ct-to-pet": {"modality": "CT", "model": str(package),
                                             "lesion_threshold": 0.01,
                                             "min_lesion_volume_ml": 0.0}})
    assert cfg.logging.phi is False
    study = StudyInfo(patient_name="Geheim^Jörg", patient_id="PID-SECRET-4711")
    files = make_tiny_ct(tmp_path / "ct", shape=(4, 32, 32), study=study)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    with stand_in_pacs(dest_port) as pacs, Node(cfg, tracker_interval_s=0.1) as n:
        assert all(r.ok for r in scu.send_files(files, "VPET", "127.0.0.1", n.port))
        wait_for(lambda: _jobs(n), timeout=10)
        worker = Worker(cfg, db=n.db)
        assert worker.run_one()
        (job,) = _jobs(n)
        assert job.state == "done", job.reason
        assert pacs.instances
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "1.2." in text or "2.25." in text  # UIDs are logged; the capture works
    for secret in ("Geheim", "Jörg", "PID-SECRET-4711"):
        assert secret not in text


def _jobs(node: Node) -> list[Job]:
    with node.db.session() as s:
        return list(s.scalars(select(Job)))
