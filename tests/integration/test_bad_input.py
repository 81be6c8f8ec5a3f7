"""Bad input end to end: each case gets a clear, recorded reason and the node keeps serving."""

from __future__ import annotations

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import select

from dicom_node.db import Delivery, Job
from dicom_node.local_pacs import LocalPACS
from dicom_node.node import Node
from dicom_node.scu import echo, send_files
from tests.conftest import free_port, make_tiny_ct
from tests.dicom_node.helpers import wait_for
from tests.integration.conftest import site_config
from training.phantoms.dicom_writer import StudyInfo


def _job_for(node: Node, series_uid: str) -> Job:
    def final():
        with node.db.session() as s:
            job = s.scalars(select(Job).where(Job.series_uid == series_uid)).first()
            return job if job is not None and job.state in ("done", "failed", "dead") else None
    return wait_for(final, timeout=300, poll=0.2)


def test_ct_slice_without_pixel_spacing_fails_with_reason_then_node_keeps_serving(
        site, tmp_path, phantom_ct):
    broken = make_tiny_ct(tmp_path / "broken", study=StudyInfo())
    ds = pydicom.dcmread(broken[3])
    del ds.PixelSpacing
    ds.save_as(broken[3])
    results = send_files(broken, "VPET", "127.0.0.1", site.node.port, calling_ae="SCANNER")
    assert all(r.ok for r in results)  # accepted and kept: the error is in the content
    job = _job_for(site.node, ds.SeriesInstanceUID)
    assert job.state == "failed"
    assert "PixelSpacing" in job.reason and ds.SOPInstanceUID in job.reason

    assert echo("VPET", "127.0.0.1", site.node.port, calling_ae="SCANNER") == 0
    send_files(phantom_ct, "VPET", "127.0.0.1", site.node.port, calling_ae="SCANNER")
    good = _job_for(site.node, pydicom.dcmread(phantom_ct[0]).SeriesInstanceUID)
    assert good.state == "done", good.reason


def test_destination_down_is_recorded_per_destination_and_node_keeps_serving(tmp_path):
    down_port = free_port()  # nobody listens here
    pacs = LocalPACS(tmp_path / "pacs", free_port()).start()
    config = site_config(
        tmp_path / "node", pacs.port,
        destinations={"down": {"ae_title": "DOWN", "host": "127.0.0.1", "port": down_port},
                      "pacs": {"ae_title": "LOCALPACS", "host": "127.0.0.1", "port": pacs.port}},
        rules=[{"name": "ct", "match": {"modality": "CT"}, "recipe": "ct-to-pet",
                "destinations": ["down", "pacs"]}])
    with Node(config, tracker_interval_s=0.1) as node:
        files = make_tiny_ct(tmp_path / "ct", study=StudyInfo(), series_instance_uid=generate_uid())
        send_files(files, "VPET", "127.0.0.1", node.port, calling_ae="SCANNER")
        job = _job_for(node, pydicom.dcmread(files[0]).SeriesInstanceUID)
        assert job.state in ("failed", "dead")
        assert "down" in job.reason.lower() and str(down_port) in job.reason
        with node.db.session() as s:
            deliveries = s.scalars(select(Delivery).where(Delivery.job_id == job.id)).all()
        by_dest = {d.destination for d in deliveries if d.status == "sent"}
        assert by_dest == {"pacs"}  # the healthy destination still got everything
        assert pacs.count() == len(job.outputs)
        assert echo("VPET", "127.0.0.1", node.port, calling_ae="SCANNER") == 0
    pacs.stop()
