"""8 senders at once (bounded in time): nothing lost, every series complete."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from dicom_node import scu
from dicom_node.db import Instance, Job, Series
from tests.conftest import make_tiny_ct
from tests.dicom_node.helpers import wait_for
from training.phantoms.dicom_writer import StudyInfo

SENDERS, SLICES = 8, 10


@pytest.mark.timeout(120)
def test_eight_senders_at_once(node, tmp_path):
    series = [make_tiny_ct(tmp_path / f"s{i}", shape=(SLICES, 16, 16), seed=i,
                           study=StudyInfo(patient_id=f"P{i}")) for i in range(SENDERS)]

    def send(i: int) -> int:
        results = scu.send_files(series[i], "VPET", "127.0.0.1", node.port,
                                 calling_ae=f"MOD{i}")
        return sum(r.ok for r in results)

    t0 = time.monotonic()
    with ThreadPoolExecutor(SENDERS) as pool:
        ok = list(pool.map(send, range(SENDERS)))
    assert ok == [SLICES] * SENDERS
    assert time.monotonic() - t0 < 60

    def all_routed() -> bool:
        with node.db.session() as s:
            return len(list(s.scalars(select(Job)))) == SENDERS
    wait_for(all_routed, timeout=30)
    with node.db.session() as s:
        instances = list(s.scalars(select(Instance)))
        rows = list(s.scalars(select(Series)))
    assert len(instances) == SENDERS * SLICES
    assert all(Path(i.path).is_file() for i in instances)
    assert len(rows) == SENDERS
    assert all(r.instance_count == SLICES and r.state == "queued" and r.version == 1
               for r in rows)
