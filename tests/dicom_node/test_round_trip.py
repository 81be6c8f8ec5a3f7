"""Full round trip with the real pipeline: SCU -> node -> spawned worker -> destination SCP."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from dicom_node import scu
from dicom_node.db import Delivery, Job
from dicom_node.node import Node
from tests.conftest import make_tiny_ct
from tests.dicom_node.helpers import stand_in_pacs, wait_for

torch = pytest.importorskip("torch")
runner = pytest.importorskip("pipeline.runner")

PM = "1.2.840.10008.5.1.4.1.1.30"


def tiny_package(out):
    from pipeline.models import save_package
    from pipeline.models.unet2d import UNet2D

    torch.manual_seed(0)
    manifest = {
        "name": "tiny-node-test", "version": "test-0.1",
        "architecture": {"name": "unet2d", "params": {"in_channels": 3, "base": 4, "depth": 2}},
        "input": {"modality": "CT", "spacing_mm": [4.0, 4.0, 3.0],
                  "normalization": {"kind": "ct_window", "low": -160, "high": 240}},
        "output": {"units": "SUVbw", "scale": 1.0},
    }
    return save_package(out, UNet2D(in_channels=3, base=4, depth=2), manifest)


@pytest.mark.timeout(240)
def test_round_trip_real_pipeline(make_config, tmp_path, dest_port):
    package = tiny_package(tmp_path / "pkg")
    cfg = make_config(
        recipes={"ct-to-pet": {"modality": "CT", "model": str(package),
                               "lesion_threshold": 0.01, "min_lesion_volume_ml": 0.0}},
        workers={"count": 1, "device": "cpu", "lease_s": 60, "poll_s": 0.1},
    )
    files = make_tiny_ct(tmp_path / "ct")
    with stand_in_pacs(dest_port) as dest, Node(cfg, tracker_interval_s=0.1) as node:
        assert all(r.ok for r in scu.send_files(files, "VPET", "127.0.0.1", node.port))

        def final_job():
            with node.db.session() as s:
                job = s.scalars(select(Job)).first()
            return job if job is not None and job.state in ("done", "failed", "dead") else None

        job = wait_for(final_job, timeout=200, poll=0.25)
        assert job.state == "done", job.reason
        assert "pm" in {o["kind"] for o in job.outputs}
        sent = {(o["sop_class_uid"], o["sop_instance_uid"]) for o in job.outputs}
        assert set(dest.instances) == sent
        assert PM in {c for c, _ in dest.instances}
        with node.db.session() as s:
            statuses = set(s.scalars(select(Delivery.status)))
        assert statuses == {"sent"}
