"""kill -9 of the receiver (`vpet serve` as a subprocess) in the middle of a study.

The sender had an association open with half the series stored when the node died. After a
restart the sender re-sends the whole series: the node must process it once (the real
pipeline with the shipped demo model) and deliver every output exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pydicom
import pytest
import yaml
from pynetdicom import AE
from sqlalchemy import select

from dicom_node.db import Database, Instance, Job, Series
from dicom_node.local_pacs import LocalPACS
from dicom_node.scu import echo, send_files
from pipeline.errors import DeliveryError
from tests.conftest import free_port
from tests.dicom_node.helpers import wait_for

DEADLINE_S = 240


def _serve(cfg_path: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "dicom_node.cli", "serve", "--config",
                             str(cfg_path)], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def _up(port: int) -> bool:
    try:
        return echo("VPET", "127.0.0.1", port, calling_ae="SCANNER", timeout=2) == 0
    except DeliveryError:
        return False


@pytest.mark.timeout(DEADLINE_S + 60)
def test_kill9_receiver_mid_study(tmp_path, phantom_ct):
    port = free_port()
    pacs = LocalPACS(tmp_path / "pacs", free_port()).start()
    cfg = {
        "node": {"ae_title": "VPET", "port": port},
        "destinations": {"pacs": {"ae_title": "LOCALPACS", "host": "127.0.0.1",
                                  "port": pacs.port}},
        "rules": [{"name": "ct", "match": {"modality": "CT"}, "recipe": "ct-to-pet",
                   "destinations": ["pacs"]}],
        "storage": {"path": str(tmp_path / "node")},
        "series": {"timeout_s": 3},
        "workers": {"count": 1, "device": "cpu", "lease_s": 60, "poll_s": 0.2},
        "sender": {"retries": 2, "backoff_s": 0.2, "timeout_s": 10},
    }
    cfg_path = tmp_path / "vpet.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    log = tmp_path / "serve.log"
    first = _serve(cfg_path, log)
    second = None
    try:
        wait_for(lambda: _up(port), timeout=60, poll=0.3)
        half = len(phantom_ct) // 2
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(pydicom.dcmread(phantom_ct[0]).SOPClassUID)
        assoc = ae.associate("127.0.0.1", port, ae_title="VPET")
        assert assoc.is_established
        for f in phantom_ct[:half]:
            assert assoc.send_c_store(f).Status == 0
        os.kill(first.pid, signal.SIGKILL)  # association still open, half a series stored
        first.wait(10)
        assoc.abort()

        second = _serve(cfg_path, log)
        wait_for(lambda: _up(port), timeout=60, poll=0.2)
        results = send_files(phantom_ct, "VPET", "127.0.0.1", port, calling_ae="SCANNER")
        assert all(r.ok for r in results)

        db = Database(f"sqlite:///{tmp_path / 'node' / 'vpet.sqlite3'}")

        def finished() -> list[Job] | None:
            with db.session() as s:
                jobs = list(s.scalars(select(Job)))
            return jobs if jobs and all(j.state in ("done", "failed", "dead") for j in jobs) \
                else None

        jobs = wait_for(finished, timeout=DEADLINE_S, poll=0.5)
        assert [j.state for j in jobs] == ["done"], [(j.state, j.reason) for j in jobs]
        wait_for(lambda: pacs.count() >= len(jobs[0].outputs), timeout=30)
        with db.session() as s:
            assert len(list(s.scalars(select(Instance)))) == len(phantom_ct)
            (series,) = s.scalars(select(Series))
            assert series.version == 1 and series.instance_count == len(phantom_ct)
        db.dispose()
        received = Counter(p.stem for p in pacs.received)
        assert set(received) == {o["sop_instance_uid"] for o in jobs[0].outputs}
        assert set(received.values()) == {1}  # nothing delivered twice
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        pacs.stop()
    assert second.returncode == 0 or second.returncode == -signal.SIGTERM, log.read_text()[-3000:]
