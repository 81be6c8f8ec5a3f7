"""Series completion: count hints finish early or wait longer (capped); an aborted sender's
series completes with what arrived; a late instance gives a new version with its own job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from sqlalchemy import select

from dicom_node import scu
from dicom_node.db import Job, Series
from dicom_node.node import Node
from dicom_node.worker import Worker
from pipeline.encode.uids import output_uids
from pipeline.types import Recipe
from tests.conftest import make_tiny_ct
from tests.dicom_node.helpers import fake_runner, wait_for

CT = "1.2.840.10008.5.1.4.1.1.2"


def _series(node: Node) -> Series:
    with node.db.session() as s:
        return s.scalar(select(Series))


def _jobs(node: Node) -> list[Job]:
    with node.db.session() as s:
        return list(s.scalars(select(Job).order_by(Job.id)))


def test_count_hint_completes_without_idle_wait(make_config, tmp_path):
    cfg = make_config(series={"timeout_s": 60})
    files = make_tiny_ct(tmp_path / "ct", shape=(3, 8, 8), extra={"ImagesInAcquisition": 3})
    with Node(cfg, tracker_interval_s=0.1) as n:
        t0 = time.monotonic()
        assert all(r.ok for r in scu.send_files(files, "VPET", "127.0.0.1", n.port))
        wait_for(lambda: _series(n).state == "queued", timeout=5)
        assert time.monotonic() - t0 < 5  # far below the 60 s idle timeout


def test_count_hint_not_reached_waits_up_to_cap(make_config, tmp_path):
    cfg = make_config(series={"timeout_s": 0.2, "max_wait_s": 2.0})
    files = make_tiny_ct(tmp_path / "ct", shape=(3, 8, 8), extra={"ImagesInAcquisition": 3})
    with Node(cfg, tracker_interval_s=0.1) as n:
        assert all(r.ok for r in scu.send_files(files[:2], "VPET", "127.0.0.1", n.port))
        t0 = time.monotonic()
        with pytest.raises(AssertionError):  # 2 of 3: longer than timeout_s, still receiving
            wait_for(lambda: _series(n).state != "receiving", timeout=1.0)
        wait_for(lambda: _series(n).state == "queued", timeout=5)
        assert time.monotonic() - t0 >= 1.0
        assert _series(n).instance_count == 2


def test_sender_aborts_mid_series(node, tmp_path):
    files = make_tiny_ct(tmp_path / "ct", shape=(4, 8, 8))
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(CT, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", node.port, ae_title="VPET")
    for f in files[:2]:
        assert assoc.send_c_store(pydicom.dcmread(f)).Status == 0
    with pytest.raises(AssertionError):  # open association: never complete
        wait_for(lambda: _series(node).state != "receiving", timeout=0.8)
    assoc.abort()
    wait_for(lambda: _series(node).state == "queued", timeout=5)
    (job,) = _jobs(node)
    assert _series(node).instance_count == 2 and job.series_version == 1


class Recorder:
    """A runner that records which files each job got, then behaves like the fake runner."""

    def __init__(self) -> None:
        self.calls: list[list[Path]] = []

    def __call__(self, files: list[Path], out_dir: Path, *, recipe: Recipe, model: Any,
                 device: str):
        self.calls.append(list(files))
        return fake_runner(files, out_dir, recipe=recipe, model=model, device=device)


def test_late_instance_gives_version_2_with_all_instances(make_config, tmp_path):
    cfg = make_config(rules=[{"name": "ct", "match": {"modality": "CT"},
                              "recipe": "ct-to-pet"}])  # no destination: results stay local
    files = make_tiny_ct(tmp_path / "ct", shape=(3, 8, 8))
    with Node(cfg, tracker_interval_s=0.1) as n:
        scu.send_files(files[:2], "VPET", "127.0.0.1", n.port)
        wait_for(lambda: len(_jobs(n)) == 1, timeout=5)
        scu.send_files(files[2:], "VPET", "127.0.0.1", n.port)  # late: after completion
        wait_for(lambda: len(_jobs(n)) == 2, timeout=5)
        recorder = Recorder()
        worker = Worker(cfg, db=n.db, runner=recorder)
        assert worker.run_one() and worker.run_one()  # v1 runs after v2 exists: still 2 files
        v1, v2 = _jobs(n)
        assert (v1.series_version, v2.series_version) == (1, 2)
        assert v1.state == v2.state == "done" and v1.outputs != v2.outputs
        read = [[pydicom.dcmread(p, stop_before_pixels=True) for p in c] for c in recorder.calls]
        uids = [sorted(str(d.SOPInstanceUID) for d in call) for call in read]
        sent = [str(pydicom.dcmread(f).SOPInstanceUID) for f in files]
        assert uids[0] == sorted(sent[:2]) and uids[1] == sorted(sent)  # never a mix
        # the pipeline's output UIDs derive from the sorted inputs: each version has its own
        assert output_uids(read[0], "m", "pm") != output_uids(read[1], "m", "pm")
