"""Start-up recovery after a crash (`kill -9`, power loss) of a previous node process.

Why: associations cut by the crash never sent their release; `release_orphans` marks their
series released, and this gives the senders (which normally re-send after a failure) one full
`series.timeout_s` from the restart before those series complete, instead of completing a
partial series at once. Jobs need nothing here: a dead worker's lease expires and the job is
reclaimed; its Delivery rows make the sender skip what was already delivered.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select, update

from dicom_node.db import Database, Job, Series, utcnow
from dicom_node.jobs import ACTIVE

logger = logging.getLogger(__name__)


def restart_grace(db: Database) -> int:
    """Restart the idle clock of every series still receiving; returns how many."""
    with db.session() as s:
        n = s.execute(update(Series).where(Series.state == "receiving")
                      .values(last_received_at=utcnow())).rowcount or 0
        leased = s.scalar(select(func.count()).select_from(Job).where(Job.state.in_(ACTIVE)))
    if n:
        logger.info("%d series were receiving at the last stop: waiting for their senders", n)
    if leased:
        logger.info("%d job(s) held by workers of a previous run: reclaimed when their leases "
                    "end", leased)
    return n
