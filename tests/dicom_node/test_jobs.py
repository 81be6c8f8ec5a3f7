"""Job claims with a lease: one winner, expiry reclaim, dead after max attempts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from dicom_node.config import Config
from dicom_node.db import Database, Job, utcnow
from dicom_node.jobs import claim_job, create_job, get_job, renew_lease, update_job


def _db(tmp_path) -> Database:
    db = Database(Config.embedded_defaults(tmp_path).database_url)
    db.create_all()
    return db


def _expire(db: Database, job_id: int) -> None:
    with db.session() as s:
        s.execute(update(Job).where(Job.id == job_id)
                  .values(lease_until=utcnow() - dt.timedelta(seconds=1)))


def test_claim_lease_and_reclaim(tmp_path):
    db = _db(tmp_path)
    jid = create_job(db, series_uid="1.2", series_version=1, rule="r", recipe="ct-to-pet",
                     destinations=["pacs"])
    job = claim_job(db, "w1", lease_s=60)
    assert job is not None and job.id == jid and job.state == "running"
    assert job.lease_owner == "w1" and job.attempts == 1 and job.lease_until > utcnow()
    assert claim_job(db, "w2", lease_s=60) is None  # leased: nobody else gets it
    assert renew_lease(db, jid, "w1", 60)
    assert not renew_lease(db, jid, "w2", 60)
    _expire(db, jid)  # w1 "crashed"
    again = claim_job(db, "w2", lease_s=60)
    assert again is not None and again.id == jid and again.lease_owner == "w2"
    assert again.attempts == 2
    assert not update_job(db, jid, "w1", state="done")  # stale owner cannot finish it
    assert update_job(db, jid, "w2", state="done")
    done = get_job(db, jid)
    assert done.state == "done" and done.lease_owner is None
    assert claim_job(db, "w3", lease_s=60) is None


def test_dead_after_max_attempts(tmp_path):
    db = _db(tmp_path)
    jid = create_job(db, series_uid="1.2", series_version=1, rule="r", recipe="ct-to-pet",
                     destinations=[])
    for owner in ("a", "b"):
        assert claim_job(db, owner, lease_s=60, max_attempts=2) is not None
        _expire(db, jid)
    assert claim_job(db, "c", lease_s=60, max_attempts=2) is None
    job = get_job(db, jid)
    assert job.state == "dead" and "expired after 2 attempts" in job.reason


def test_claims_in_order_one_each(tmp_path):
    db = _db(tmp_path)
    ids = [create_job(db, series_uid=f"1.{i}", series_version=1, rule="r", recipe="ct-to-pet",
                      destinations=[]) for i in range(3)]
    claimed = [claim_job(db, f"w{i}", lease_s=60).id for i in range(3)]
    assert claimed == ids
    assert claim_job(db, "w9", lease_s=60) is None
