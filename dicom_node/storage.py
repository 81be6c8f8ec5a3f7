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
import time
from collections.abc import Callable
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


def disk_shortage(folder: Path, min_free_gb: float, max_used_percent: float) -> str | None:
    """Why the disk holding `folder` is too full to accept data, or None when it is fine."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    free = st.f_bavail * st.f_frsize
    total = st.f_blocks * st.f_frsize
    used_pct = 100.0 * (1 - st.f_bavail / st.f_blocks) if st.f_blocks else 0.0
    if free < min_free_gb * 1e9:
        return (f"disk low: {free / 1e9:.2f} GB free on {probe} (storage.min_free_gb "
                f"{min_free_gb:g}, {total / 1e9:.0f} GB total)")
    if used_pct > max_used_percent:
        return (f"disk full: {used_pct:.1f} % used on {probe} (storage.max_used_percent "
                f"{max_used_percent:g})")
    return None


class DiskGuard:
    """`disk_shortage` for the configured storage, re-measured at most every `ttl_s` seconds.

    Why: statvfs per C-STORE is cheap but not free; a one-second cache keeps the guard off
    the receive hot path while still reacting within a second.
    """

    def __init__(self, settings_source: Callable[[], tuple[Path, float, float]],
                 ttl_s: float = 1.0) -> None:
        self._source = settings_source  # -> (folder, min_free_gb, max_used_percent)
        self.ttl_s = ttl_s
        self._until = 0.0
        self._reason: str | None = None

    def check(self) -> str | None:
        now = time.monotonic()
        if now >= self._until:
            folder, min_free, max_used = self._source()
            try:
                self._reason = disk_shortage(folder, min_free, max_used)
            except OSError as exc:
                self._reason = f"cannot measure free space: {exc}"
            self._until = now + self.ttl_s
        return self._reason

    def invalidate(self) -> None:
        self._until = 0.0
