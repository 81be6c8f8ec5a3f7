"""Admin queries and actions on jobs, series and events (behind `vpet jobs` / `vpet status`).

Why: the CLI only formats; everything here returns plain dicts (JSON-ready) so the same
functions serve the table output, `--json`, and tests. No patient data is read or returned:
only UIDs, states, counts and reasons.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import func, select, update

from dicom_node.db import Database, Delivery, Event, Job, Series, utcnow
from dicom_node.jobs import ACTIVE, FINAL

logger = logging.getLogger(__name__)

JOB_STATES = ("queued", "running", "sending", "done", "failed", "dead")


class AdminError(Exception):
    """An admin action that cannot be done (unknown id, wrong state); the message says why."""


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "state": job.state, "series_uid": job.series_uid,
        "series_version": job.series_version, "rule": job.rule, "recipe": job.recipe,
        "destinations": list(job.destinations or []), "attempts": job.attempts,
        "reason": job.reason, "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
    }


def list_jobs(db: Database, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Newest jobs first, optionally of one state."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if state:
        query = query.where(Job.state == state)
    with db.session() as s:
        return [job_summary(j) for j in s.scalars(query)]


def show_job(db: Database, job_id: int) -> dict[str, Any]:
    """One job with its lease, timings, outputs and per-instance deliveries."""
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise AdminError(f"job {job_id} does not exist")
        data = job_summary(job)
        data.update(lease_owner=job.lease_owner, lease_until=_iso(job.lease_until),
                    timings=dict(job.timings or {}), outputs=list(job.outputs or []))
        data["deliveries"] = [
            {"destination": d.destination, "sop_instance_uid": d.sop_instance_uid,
             "status": d.status, "attempts": d.attempts, "last_error": d.last_error}
            for d in s.scalars(select(Delivery).where(Delivery.job_id == job_id)
                               .order_by(Delivery.id))
        ]
    return data


def retry_job(db: Database, job_id: int) -> dict[str, Any]:
    """Re-queue a failed, dead or done job: attempts reset; delivered instances stay sent."""
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise AdminError(f"job {job_id} does not exist")
        if job.state not in FINAL:
            raise AdminError(f"job {job_id} is {job.state}; only done, failed or dead jobs "
                             "can be retried")
        previous = job.state
        s.execute(update(Job).where(Job.id == job_id).values(
            state="queued", attempts=0, reason=None, lease_owner=None, lease_until=None,
            updated_at=utcnow()))
    logger.info("job %d re-queued by operator (was %s)", job_id, previous)
    return show_job(db, job_id)


def cancel_job(db: Database, job_id: int) -> dict[str, Any]:
    """Stop a queued/running/sending job: it ends `failed` ("cancelled by operator").

    A running worker loses its lease: its later state updates (guarded by owner) are ignored.
    """
    with db.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise AdminError(f"job {job_id} does not exist")
        if job.state in FINAL:
            raise AdminError(f"job {job_id} is already {job.state}")
        previous = job.state
        s.execute(update(Job).where(Job.id == job_id).values(
            state="failed", reason=f"cancelled by operator (was {previous})", lease_owner=None,
            lease_until=None, updated_at=utcnow()))
    logger.info("job %d cancelled by operator (was %s)", job_id, previous)
    return show_job(db, job_id)


def node_status(db: Database, errors: int = 10) -> dict[str, Any]:
    """Counts by job and series state, series receiving, queue depth, last error events."""
    with db.session() as s:
        jobs = dict.fromkeys(JOB_STATES, 0)
        jobs.update({k: int(v) for k, v in s.execute(
            select(Job.state, func.count()).group_by(Job.state))})
        series = {k: int(v) for k, v in s.execute(
            select(Series.state, func.count()).group_by(Series.state))}
        receiving = [
            {"series_uid": r.series_uid, "modality": r.modality, "instances": r.instance_count,
             "version": r.version, "released": r.association_released,
             "last_received_at": _iso(r.last_received_at)}
            for r in s.scalars(select(Series).where(Series.state == "receiving")
                               .order_by(Series.last_received_at.desc()).limit(50))
        ]
        events = [
            {"at": _iso(e.at), "kind": e.kind, "detail": e.detail, "peer": e.peer,
             "sop_instance_uid": e.sop_instance_uid}
            for e in s.scalars(select(Event).order_by(Event.id.desc()).limit(errors))
        ]
        failed = [
            {"id": j.id, "state": j.state, "reason": j.reason, "updated_at": _iso(j.updated_at)}
            for j in s.scalars(select(Job).where(Job.state.in_(("failed", "dead")))
                               .order_by(Job.updated_at.desc()).limit(errors))
        ]
    return {
        "jobs": jobs, "series": series, "queue_depth": jobs["queued"],
        "active": sum(jobs[s] for s in ACTIVE), "receiving": receiving,
        "last_errors": events, "failed_jobs": failed,
    }
