"""After an unclean stop, index received files whose database row did not survive.

Why: every acknowledged instance is a complete, fsynced, self-describing Part 10 file under
the incoming folder; the database is its index. SQLite runs with synchronous=NORMAL (WAL): a
commit survives a killed process but the last commits can roll back when the machine itself
loses power, and waiting for that flush on every C-STORE halved receive speed. So the node
leaves a marker in its storage folder while it runs; when a start finds the marker (the last
run did not stop cleanly), files with no row are indexed again here, before the series
tracker runs, and go through the normal completion path.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pydicom
from sqlalchemy import select

from dicom_node.config import Config
from dicom_node.db import Database, Instance
from dicom_node.intake import PARTIAL_DIR, parse_header
from dicom_node.records import ReceivedInstance, record_instance
from dicom_node.storage import validate_uid
from pipeline.errors import InputError

logger = logging.getLogger(__name__)

MARKER = ".node-running"


def marker_path(config: Config) -> Path:
    return config.storage.path / MARKER


def mark_running(config: Config) -> bool:
    """Leave the marker; True when it was already there (the last run did not stop cleanly)."""
    path = marker_path(config)
    unclean = path.exists()
    path.write_text(f"{os.getpid()}\n")
    return unclean


def mark_stopped(config: Config) -> None:
    marker_path(config).unlink(missing_ok=True)


def reconcile_incoming(config: Config, db: Database) -> int:
    """Index every stored instance file that has no Instance row; returns how many."""
    started = time.monotonic()
    with db.session() as s:
        known = set(s.scalars(select(Instance.path)))
    added = 0
    for path in sorted(config.incoming_dir.rglob("*.dcm")):
        if PARTIAL_DIR in path.parts or str(path) in known:
            continue
        try:
            record_instance(db, _received(path, config.node.ae_title))
        except (InputError, OSError) as exc:
            logger.error("stored file %s could not be re-indexed (left in place): %s", path, exc)
            continue
        added += 1
    if added:
        logger.warning("%d stored instance(s) had lost their database row (unclean stop): "
                       "re-indexed in %.1f s", added, time.monotonic() - started)
    return added


def _received(path: Path, called_ae: str) -> ReceivedInstance:
    facts = parse_header(path)
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        facts[keyword] = validate_uid(facts.get(keyword), keyword)
    try:
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        calling = str(meta.get("SourceApplicationEntityTitle", "") or "").strip()
    except Exception:  # noqa: BLE001 - the AE title is a nicety; parse_header succeeded
        calling = ""
    return ReceivedInstance(
        sop_instance_uid=facts["SOPInstanceUID"], series_uid=facts["SeriesInstanceUID"],
        study_uid=facts["StudyInstanceUID"], sop_class=facts.get("SOPClassUID", ""),
        path=str(path), calling_ae=calling, called_ae=called_ae,
        assoc_key="recovered", modality=facts.get("Modality", ""),
        description=facts.get("SeriesDescription", ""),
        body_part=facts.get("BodyPartExamined", ""))
