"""Job lifecycle in the database: create, claim with a lease, renew, finish.

Why: the database is the coordinator. PostgreSQL claims with `FOR UPDATE SKIP LOCKED`;
SQLite claims with one guarded UPDATE (only one writer wins the row). A job whose lease
expired (crashed worker) is reclaimed, and marked dead after `max_attempts`.

States: queued -> running (pipeline) -> sending (outputs in the outbox, delivering) -> one of
- done: every output reached every destination;
- failed: the job cannot succeed as it is (the pipeline refused the series; the reason names
  the tag / UID). Not retried automatically;
- dead: automatic retries are spent (a destination still failing after `sender.retries`
  retries with backoff, or the lease expired `workers.max_attempts` times: the worker keeps
  crashing). Dead-lettered with the reason; `vpet jobs retry` re-queues it.
A reclaimed `sending` job re-uses its outbox and sends only instances not yet delivered.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import and_, func, or_, select, update

from dicom_node.db import Database, Job, utcnow

logger = logging.getLogger(__name__)

ACTIVE = ("running", "sending")
FINAL = ("done", "failed", "dead")


def create_job(db: Database, *, series_uid: str, series_version: int, rule: str, recipe: str,
               destinations: list[str]) -> int:
    with db.session() as s:
        job = Job(series_uid=series_uid, series_version=series_version, rule=rule, recipe=recipe,
                  destinations=list(destinations), state="queued", timings={}, outputs=[])
        s.add(job)
        s.flush()
        return job.id


def _claimable(now: dt.datetime):
    return or_(Job.state == "queued", and_(Job.state.in_(ACTIVE), Job.lease_until < now))


def claim_job(db: Database, owner: str, lease_s: float, max_attempts: int = 3) -> Job | None:
    """Claim the oldest queued (or lease-expired) job for `owner`; None when there is none."""
    now = utcnow()
    until = now + dt.timedelta(seconds=lease_s)
    with db.session() as s:
        query = select(Job).where(_claimable(now)).order_by(Job.id).limit(5)
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        candidates = list(s.scalars(query))
        for job in candidates:
            if job.state in ACTIVE and job.attempts >= max_attempts:
                job.state, job.reason = "dead", (
                    f"lease of {job.lease_owner} expired after {job.attempts} attempts")
                job.lease_owner = job.lease_until = None
                logger.error("job %d is dead: %s", job.id, job.reason)
                continue
            if job.state in ACTIVE:
                logger.warning("reclaiming job %d from %s (lease expired)", job.id,
                               job.lease_owner)
            result = s.execute(
                update(Job).where(Job.id == job.id, _claimable(now))
                .values(state="running", lease_owner=owner, lease_until=until,
                        attempts=Job.attempts + 1, reason=None, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                s.flush()
                s.refresh(job)
                return job
    return None


def renew_lease(db: Database, job_id: int, owner: str, lease_s: float) -> bool:
    """Extend the lease; False when another worker took the job meanwhile."""
    with db.session() as s:
        result = s.execute(
            update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.state.in_(ACTIVE))
            .values(lease_until=utcnow() + dt.timedelta(seconds=lease_s))
        )
        return result.rowcount == 1


def update_job(db: Database, job_id: int, owner: str | None = None, **values: object) -> bool:
    """Set columns on a job (only while `owner` still holds it, when given)."""
    values.setdefault("updated_at", utcnow())
    if values.get("state") in FINAL:
        values.update(lease_owner=None, lease_until=None)
    with db.session() as s:
        query = update(Job).where(Job.id == job_id)
        if owner is not None:
            query = query.where(Job.lease_owner == owner)
        return s.execute(query.values(**values)).rowcount == 1


def release_job(db: Database, job_id: int, owner: str) -> bool:
    """Give a job back on a graceful stop: claimable at once, the attempt not counted."""
    with db.session() as s:
        return s.execute(
            update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.state.in_(ACTIVE))
            .values(lease_until=utcnow(), attempts=Job.attempts - 1, updated_at=utcnow())
        ).rowcount == 1


def get_job(db: Database, job_id: int) -> Job | None:
    with db.session() as s:
        return s.get(Job, job_id)


def pending_count(db: Database) -> int:
    """Jobs not yet final (queued, running, sending)."""
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Job)
                            .where(Job.state.not_in(FINAL))) or 0)
