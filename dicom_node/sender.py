"""Deliver a job's outputs to its destinations, with retries, backoff and dead-lettering.

Why: one destination being down must not stop the others; every instance's fate is recorded
(Delivery rows, written as each C-STORE answer arrives) so a retry, a restart or a worker
killed mid-association sends only what is still missing, and the job's reason names the
destination and what went wrong.

Per destination: the first attempt, then `sender.retries` retries after
`min(backoff_s * 2**(n-1), backoff_max_s)` seconds. A refused presentation context or a
failure status for one output is an error for that destination only. When the retries are
spent the destination's remaining rows become `dead` (dead-lettered, `last_error` says why)
and the worker marks the job `dead`; `vpet jobs retry` re-queues it and only the missing
instances are sent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select, update

from dicom_node.config import Config, Destination
from dicom_node.db import Database, Delivery, utcnow
from dicom_node.scu import SendResult, send_files
from dicom_node.tls import client_tls_args
from pipeline.errors import DeliveryError

logger = logging.getLogger(__name__)


class DeliveryStopped(Exception):
    """The node is stopping: leave the job for the next start instead of failing it."""


def _label(name: str, dest: Destination) -> str:
    tls = " TLS" if dest.tls is not None else ""
    return f"destination {name} ({dest.ae_title}@{dest.host}:{dest.port}{tls})"


def backoff_delay(config: Config, retry: int) -> float:
    """Seconds before retry number `retry` (1-based): exponential, capped."""
    s = config.sender
    return min(s.backoff_s * 2 ** (retry - 1), s.backoff_max_s)


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


def _set(db: Database, job_id: int, dest: str, uids: Sequence[str], status: str,
         error: str | None) -> None:
    if not uids:
        return
    with db.session() as s:
        s.execute(update(Delivery).where(
            Delivery.job_id == job_id, Delivery.destination == dest,
            Delivery.sop_instance_uid.in_(list(uids)))
            .values(status=status, last_error=error, attempts=Delivery.attempts + 1,
                    updated_at=utcnow()))


def _attempt(config: Config, db: Database, job_id: int, name: str, dest: Destination,
             todo: Sequence[dict]) -> str | None:
    """One association: record each answer as it arrives; None when everything was sent."""
    recorded: set[str] = set()

    def on_result(r: SendResult) -> None:
        uid = r.sop_instance_uid or next((o["sop_instance_uid"] for o in todo
                                          if Path(o["path"]) == r.path), "")
        recorded.add(uid)
        _set(db, job_id, name, [uid], "sent" if r.ok else "failed", None if r.ok else r.error)

    results: list[SendResult] = []
    assoc_error = None
    try:
        results = send_files([Path(o["path"]) for o in todo], dest.ae_title, dest.host,
                             dest.port, calling_ae=config.sender_calling_ae,
                             timeout=config.sender.timeout_s, on_result=on_result,
                             tls_args=client_tls_args(dest))
    except DeliveryError as exc:
        assoc_error = str(exc)
    except Exception as exc:  # noqa: BLE001 - any network/TLS failure is a delivery failure
        assoc_error = f"{type(exc).__name__}: {exc}"
    missing = [o["sop_instance_uid"] for o in todo if o["sop_instance_uid"] not in recorded]
    _set(db, job_id, name, missing, "failed", assoc_error or "not sent")
    failures = [r for r in results if not r.ok]
    if assoc_error is None and not failures and not missing:
        return None
    return assoc_error or "; ".join(
        f"{r.sop_instance_uid or r.path.name}: {r.error}" for r in failures[:3]) or "not sent"


def deliver_to(config: Config, db: Database, job_id: int, name: str, outputs: Sequence[dict],
               stop: threading.Event | None = None) -> str | None:
    """Send to one destination with retries; None on success, else the dead-letter reason.

    Raises DeliveryStopped when `stop` is set while waiting to retry.
    """
    dest = config.destinations.get(name)
    if dest is None:
        return f"destination {name}: not configured"
    label = _label(name, dest)
    _ensure_rows(db, job_id, name, outputs)
    retries = config.sender.retries
    error: str | None = None
    for attempt in range(retries + 1):
        todo = _pending(db, job_id, name, outputs)
        if not todo:
            return None
        if attempt:
            delay = backoff_delay(config, attempt)
            logger.info("%s: retry %d/%d in %.1f s", label, attempt, retries, delay)
            if (stop or threading.Event()).wait(delay):
                raise DeliveryStopped(f"{label}: stopped while waiting to retry")
        error = _attempt(config, db, job_id, name, dest, todo)
        if error is None:
            logger.info("%s: %d instance(s) delivered", label, len(todo))
            return None
        logger.warning("%s: attempt %d/%d failed: %s", label, attempt + 1, retries + 1, error)
    reason = f"{label}: {error} (dead after {retries + 1} attempt(s))"
    _dead_letter(db, job_id, name, reason)
    return reason


def _dead_letter(db: Database, job_id: int, dest: str, reason: str) -> None:
    with db.session() as s:
        s.execute(update(Delivery).where(
            Delivery.job_id == job_id, Delivery.destination == dest, Delivery.status != "sent")
            .values(status="dead", updated_at=utcnow()))
    logger.error("dead letter: job %d: %s", job_id, reason)


def deliver(config: Config, db: Database, job_id: int, destinations: Sequence[str],
            outputs: Sequence[dict], stop: threading.Event | None = None) -> list[str]:
    """Deliver to every destination; returns one dead-letter reason per failed destination."""
    errors = []
    for name in destinations:
        err = deliver_to(config, db, job_id, name, outputs, stop)
        if err:
            errors.append(err)
    return errors
