"""End to end on 127.0.0.1: a real sender -> node (worker runs the real pipeline with the shipped
demo model) -> a destination Storage SCP; results checked and validated with dciodvfy."""

from __future__ import annotations

import os
import subprocess

from sqlalchemy import select

from dicom_node.db import Job
from dicom_node.scu import send_files
from tests.conftest import dciodvfy_errors, require_tool
from tests.dicom_node.helpers import wait_for
from tests.integration.checks import check_outputs, read_all

DEADLINE_S = 300


def _finished_job(site, after_id: int = 0) -> Job:
    """The newest job with an id above `after_id`, once it reached a final state."""
    def done():
        with site.node.db.session() as s:
            job = s.scalars(select(Job).where(Job.id > after_id).order_by(Job.id.desc())).first()
            return job if job is not None and job.state in ("done", "failed", "dead") else None
    return wait_for(done, timeout=DEADLINE_S, poll=0.2)


def test_pynetdicom_sender_round_trip(site, phantom_ct):
    results = send_files(phantom_ct, "VPET", "127.0.0.1", site.node.port, calling_ae="SCANNER")
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    job = _finished_job(site)
    assert job.state == "done", job.reason
    wait_for(lambda: site.pacs.count() >= len(job.outputs), timeout=30)
    check_outputs(read_all(site.pacs.received), phantom_ct)
    assert {"load", "infer", "encode"} <= set(job.timings)


def test_dcmtk_storescu_round_trip_and_every_output_passes_dciodvfy(site, phantom_ct):
    storescu = require_tool("/usr/bin/storescu")
    env = dict(os.environ, TCP_NODELAY="1")
    proc = subprocess.run(
        [storescu, "-aet", "STORESCU", "-aec", "VPET", "127.0.0.1", str(site.node.port),
         *map(str, phantom_ct)], check=False, capture_output=True, text=True, timeout=120,
        env=env)
    assert proc.returncode == 0, proc.stderr
    job = _finished_job(site)
    assert job.state == "done", job.reason
    wait_for(lambda: site.pacs.count() >= len(job.outputs), timeout=30)
    datasets = read_all(site.pacs.received)
    check_outputs(datasets, phantom_ct)
    for path in site.pacs.received:
        assert dciodvfy_errors(path) == [], path


def test_resending_the_same_study_gives_the_same_output_uids(site, phantom_ct):
    """Deterministic output UIDs: a re-run never creates duplicates in the PACS."""
    send_files(phantom_ct, "VPET", "127.0.0.1", site.node.port, calling_ae="SCANNER")
    first = _finished_job(site)
    send_files(phantom_ct, "VPET", "127.0.0.1", site.node.port, calling_ae="SCANNER")
    second = _finished_job(site, after_id=first.id)
    assert first.state == second.state == "done", (first.reason, second.reason)
    assert sorted(o["sop_instance_uid"] for o in first.outputs) == sorted(
        o["sop_instance_uid"] for o in second.outputs)
    wait_for(lambda: site.pacs.count() >= 2 * len(first.outputs), timeout=30)
    # the same instances, stored over: no duplicates in the PACS
    assert len({p.name for p in site.pacs.received}) == len(first.outputs)
