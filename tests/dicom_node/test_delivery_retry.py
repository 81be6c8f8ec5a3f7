"""Per-destination retries: backoff with a cap, recovery of a refusing destination, dead letter.

The destination is down for the first attempt and comes up during the backoff: a later retry
delivers everything. A destination that never recovers ends dead-lettered with the reason,
and the other destination is unaffected.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from dicom_node.config import Config
from dicom_node.db import Database, Delivery, Job
from dicom_node.jobs import claim_job, create_job, get_job
from dicom_node.local_pacs import LocalPACS
from dicom_node.sender import backoff_delay, deliver
from dicom_node.worker import Worker
from tests.conftest import free_port
from tests.dicom_node.crash_helpers import add_series
from tests.dicom_node.test_sender import _outputs


def _cfg(make_config, **sender) -> Config:
    base = {"retries": 4, "backoff_s": 0.2, "backoff_max_s": 0.4, "timeout_s": 5}
    base.update(sender)
    return make_config(sender=base)


def test_backoff_is_exponential_and_capped(make_config):
    cfg = _cfg(make_config, backoff_s=1.0, backoff_max_s=5.0)
    assert [backoff_delay(cfg, n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_refusing_destination_recovers_on_retry(make_config, tmp_path, dest_port):
    cfg = _cfg(make_config)
    db = Database(cfg.database_url)
    db.upgrade()
    job_id = create_job(db, series_uid="1.2", series_version=1, rule="ct", recipe="ct-to-pet",
                        destinations=["pacs"])
    outputs = _outputs(tmp_path)
    pacs = LocalPACS(tmp_path / "pacs", dest_port)
    # the PACS comes up only after the first attempt has failed (connection refused)
    timer = threading.Timer(0.1, pacs.start)
    timer.start()
    try:
        assert deliver(cfg, db, job_id, ["pacs"], outputs) == []
        assert sorted(p.stem for p in pacs.received) == sorted(
            o["sop_instance_uid"] for o in outputs)
    finally:
        timer.join()
        pacs.stop()
    with db.session() as s:
        rows = list(s.scalars(select(Delivery)))
    assert {r.status for r in rows} == {"sent"}
    assert all(r.attempts == 2 for r in rows)  # failed once, then delivered


@pytest.mark.parametrize("retries", [1])
def test_dead_letter_for_one_destination_only(make_config, tmp_path, dest_port, retries):
    down = free_port()
    cfg = make_config(
        sender={"retries": retries, "backoff_s": 0.01, "backoff_max_s": 0.02, "timeout_s": 5},
        destinations={"pacs": {"ae_title": "LOCALPACS", "host": "127.0.0.1", "port": dest_port},
                      "down": {"ae_title": "DOWN", "host": "127.0.0.1", "port": down}},
        rules=[{"name": "ct", "match": {"modality": "CT"}, "recipe": "ct-to-pet",
                "destinations": ["down", "pacs"]}])
    db = Database(cfg.database_url)
    db.upgrade()
    add_series(db, "1.2")
    job_id = create_job(db, series_uid="1.2", series_version=1, rule="ct", recipe="ct-to-pet",
                        destinations=["down", "pacs"])
    outputs = _outputs(tmp_path)
    with db.session() as s:  # outputs already in the outbox: the worker only delivers
        s.get(Job, job_id).outputs = outputs
    with LocalPACS(tmp_path / "pacs", dest_port) as pacs:
        assert Worker(cfg, db=db, runner=lambda *a, **k: None).run_one()
        assert pacs.count() == len(outputs)
    job = get_job(db, job_id)
    assert job.state == "dead" and job.lease_owner is None
    assert job.reason.startswith(f"destination down (DOWN@127.0.0.1:{down})")
    assert "dead after 2 attempt(s)" in job.reason and "pacs" not in job.reason
    with db.session() as s:
        status = {(r.destination, r.status) for r in s.scalars(select(Delivery))}
    assert status == {("down", "dead"), ("pacs", "sent")}
    assert claim_job(db, "other", lease_s=5) is None  # dead jobs are not picked up again
