"""Durable storage of received instances.

Why: Success is returned to the sender only after the bytes are on disk, so a crash never
loses an acknowledged instance. Paths are built only from validated UIDs (digits and dots),
so a hostile UID cannot escape the storage folder.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from pipeline.errors import InputError

logger = logging.getLogger(__name__)

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_valid_uid(value: object) -> bool:
    """True for a well-formed UID: digits and dots, no empty component, at most 64 chars."""
    uid = str(value) if value is not None else ""
    return 0 < len(uid) <= 64 and _UID_RE.match(uid) is not None


def validate_uid(value: object, keyword: str = "UID") -> str:
    """Return `value` as a UID string, or raise InputError naming the attribute."""
    uid = str(value).strip().rstrip("\x00") if value is not None else ""
    if not uid:
        raise InputError(f"missing {keyword}")
    if not is_valid_uid(uid):
        raise InputError(f"invalid {keyword} {uid[:80]!r}: must be digits and dots, <= 64 chars")
    return uid


def instance_path(root: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """`root/<study>/<series>/<sop>.dcm`, after validating every component."""
    study = validate_uid(study_uid, "StudyInstanceUID")
    series = validate_uid(series_uid, "SeriesInstanceUID")
    sop = validate_uid(sop_uid, "SOPInstanceUID")
    return root / study / series / f"{sop}.dcm"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically: temp file in the same folder, fsync, rename, fsync dir."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(folder)
    return path


def store_instance(
    root: Path, study_uid: str, series_uid: str, sop_uid: str, data: bytes
) -> Path:
    """Validate the UIDs and write one encoded instance (preamble + meta + dataset) durably."""
    path = instance_path(root, study_uid, series_uid, sop_uid)
    write_durably(path, data)
    logger.debug("stored %s (%d bytes)", path, len(data))
    return path
