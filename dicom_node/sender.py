"""Deliver a job's outputs to its destinations, with retries and per-instance status.

Why: one destination being down must not stop the others; every instance's fate is recorded
(Delivery rows) so a retry sends only what is still missing, and the job's failure reason
names the destination and what went wrong.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from dicom_node.config import Config, Destination
from dicom_node.db import Database, Delivery
from dicom_node.scu import SendResult, send_files
from pipeline.errors import DeliveryError

logger = logging.getLogger(__name__)


def _label(name: str, dest: Destination) -> str:
    return f"destination {name} ({dest.ae_title}@{dest.host}:{dest.port})"


def _ensure_rows(db: Database, job_id: int, dest: str, outputs: Sequence[dict]) -> None:
    with db.session() as s:
        have = set(s.scalars(select(Delivery.sop_instance_uid).where(
            Delivery.job_id == job_id, Delivery.destination == dest)))
        for out in outputs:
            if out["sop_instance_uid"] not in have:
                s.add(Delivery(job_id=job_id, destination=dest,
                               sop_instance_uid=out["sop_instance_uid"], status="pending"))


def _pending(db: Database, job_id: int, dest: str, outputs: Sequence[dict]) -> list[dict]:
    with db.session() as s:
        sent = set(s.scalars(select(Delivery.sop_instance_uid).where(
            Delivery.job_id == job_id, Delivery.destination == dest, Delivery.status == "sent")))
    return [o for o in outputs if o["sop_instance_uid"] not in sent]


def _record(db: Database, job_id: int, dest: str, results: Sequence[SendResult],
            outputs: Sequence[dict], assoc_error: str | None) -> None:
    by_uid = {r.sop_instance_uid: r for r in results}
    with db.session() as s:
        rows = s.scalars(select(Delivery).where(
            Delivery.job_id == job_id, Delivery.destination == dest,
            Delivery.sop_instance_uid.in_([o["sop_instance_uid"] for o in outputs])))
        for row in rows:
            row.attempts += 1
            r = by_uid.get(row.sop_instance_uid)
            if r is not None and r.ok:
                row.status, row.last_error = "sent", None
            else:
                row.status = "failed"
                row.last_error = (r.error if r is not None else None) or assoc_error or "not sent"


def deliver_to(config: Config, db: Database, job_id: int, name: str, outputs: Sequence[dict],
               stop: threading.Event | None = None) -> str | None:
    """Send to one destination with retries; None on success, else the error text."""
    dest = config.destinations.get(name)
    if dest is None:
        return f"destination {name}: not configured"
    label = _label(name, dest)
    _ensure_rows(db, job_id, name, outputs)
    settings = config.sender
    error: str | None = None
    for attempt in range(settings.retries + 1):
        todo = _pending(db, job_id, name, outputs)
        if not todo:
            return None
        if attempt:
            delay = min(settings.backoff_s * 2 ** (attempt - 1), settings.backoff_max_s)
            logger.info("%s: retry %d/%d in %.1f s", label, attempt, settings.retries, delay)
            if stop is not None and stop.wait(delay):
                return f"{label}: stopped before delivery ({error})"
            if stop is None and delay:
                threading.Event().wait(delay)
        results: list[SendResult] = []
        assoc_error = None
        try:
            results = send_files([Path(o["path"]) for o in todo], dest.ae_title, dest.host,
                                 dest.port, calling_ae=config.sender_calling_ae,
                                 timeout=settings.timeout_s)
        except DeliveryError as exc:
            assoc_error = str(exc)
        except Exception as exc:  # noqa: BLE001 - any network failure is a delivery failure
            assoc_error = f"{type(exc).__name__}: {exc}"
        _record(db, job_id, name, results, todo, assoc_error)
        failures = [r for r in results if not r.ok]
        if assoc_error is None and not failures:
            logger.info("%s: %d instance(s) delivered", label, len(todo))
            return None
        error = assoc_error or "; ".join(
            f"{r.sop_instance_uid or r.path.name}: {r.error}" for r in failures[:3])
        logger.warning("%s: attempt %d failed: %s", label, attempt + 1, error)
    return f"{label}: {error}"


def deliver(config: Config, db: Database, job_id: int, destinations: Sequence[str],
            outputs: Sequence[dict], stop: threading.Event | None = None) -> list[str]:
    """Deliver to every destination; returns one error text per failed destination."""
    errors = []
    for name in destinations:
        err = deliver_to(config, db, job_id, name, outputs, stop)
        if err:
            errors.append(err)
    return errors
