"""Shared fixtures: free ports, tiny synthetic series, external tool lookup, dciodvfy."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from training.phantoms.dicom_writer import StudyInfo, write_series

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_tool(name: str) -> str:
    """Path of an external program; skip the test without it, but fail under CI (CI installs it)."""
    path = shutil.which(name, path="/usr/bin:/usr/sbin:/usr/local/bin:" + os.environ.get("PATH", ""))
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required under CI but not installed")
        pytest.skip(f"{name} not installed")
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    """Lines starting with 'Error' in dciodvfy's report (it exits 0 even on errors)."""
    tool = require_tool("dciodvfy")
    proc = subprocess.run([tool, "-new", str(path)], check=False, capture_output=True, text=True,
                          timeout=60)
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("Error")]


def make_tiny_ct(out_dir: Path, *, shape=(12, 48, 48), spacing=(2.0, 2.0, 3.0), seed=0,
                 hot_lesion=True, study: StudyInfo | None = None, **kwargs) -> list[Path]:
    """A small abdomen-like CT series: body ellipse, liver block, optional hypodense lesion."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    hu = np.full(shape, -1000.0)
    cy, cx = shape[1] / 2, shape[2] / 2
    body = ((y - cy) / (shape[1] * 0.42)) ** 2 + ((x - cx) / (shape[2] * 0.45)) ** 2 <= 1
    hu[body] = 30
    liver = body & ((y - cy * 0.8) ** 2 + (x - cx * 0.7) ** 2 <= (shape[1] * 0.2) ** 2)
    hu[liver] = 55
    if hot_lesion:
        les = (z - shape[0] / 2) ** 2 + (y - cy * 0.8) ** 2 + (x - cx * 0.7) ** 2 <= 9
        hu[les] = 25
    hu += rng.normal(0, 5, shape)
    stored = np.clip(hu + 1024, 0, 4095).astype(np.int16)
    return write_series(stored, spacing, (-shape[2], -shape[1], 0.0), out_dir, modality="CT",
                        study=study or StudyInfo(), rescale=(1.0, -1024.0), **kwargs)


@pytest.fixture
def tiny_ct(tmp_path) -> list[Path]:
    return make_tiny_ct(tmp_path / "ct")


from tests.pg import pg_server, pg_url  # noqa: F401 - PostgreSQL fixtures for all tests
