"""Several machines: worker processes compete for jobs on a real PostgreSQL server.

Each job must run exactly once (FOR UPDATE SKIP LOCKED + guarded UPDATE), with no lost job.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
from collections import Counter

import pytest
from sqlalchemy import select

from dicom_node.config import Config
from dicom_node.db import Database, Job
from dicom_node.jobs import claim_job, create_job
from dicom_node.worker import spawn_worker
from tests.dicom_node.crash_helpers import add_series, counting_runner, runs
from tests.dicom_node.helpers import wait_for

pytestmark = pytest.mark.postgres
N_JOBS = 12


def _config(tmp_path, url: str) -> Config:
    return Config.embedded_defaults(tmp_path / "node", database={"url": url},
                                    workers={"count": 0, "device": "cpu", "lease_s": 30,
                                             "poll_s": 0.05})


def test_claims_skip_locked_rows(pg_url, tmp_path):
    db = Database(pg_url)
    db.upgrade()
    ids = [create_job(db, series_uid=f"1.{i}", series_version=1, rule="r", recipe="ct-to-pet",
                      destinations=[]) for i in range(3)]
    with db.session() as s:  # another machine holds the first row locked
        s.scalar(select(Job).where(Job.id == ids[0]).with_for_update())
        got = claim_job(db, "w2", lease_s=30)
        assert got is not None and got.id == ids[1]
    assert claim_job(db, "w3", lease_s=30).id == ids[0]
    db.dispose()


def test_two_worker_processes_each_job_once(pg_url, tmp_path):
    cfg = _config(tmp_path, pg_url)
    db = Database(pg_url)
    db.upgrade()
    for i in range(N_JOBS):
        add_series(db, f"1.2.{i}")
        create_job(db, series_uid=f"1.2.{i}", series_version=1, rule="r", recipe="ct-to-pet",
                   destinations=[])
    stop = mp.get_context("spawn").Event()
    runner = functools.partial(counting_runner, sleep_s=0.1)
    procs = [spawn_worker(cfg, i, stop, runner) for i in range(2)]
    try:
        def all_done() -> bool:
            with db.session() as s:
                return all(j.state == "done" for j in s.scalars(select(Job)))
        wait_for(all_done, timeout=60, poll=0.2)
    finally:
        stop.set()
        for p in procs:
            p.join(15)
            if p.is_alive():
                p.kill()
    done = runs(cfg.storage.path)
    per_job = Counter(job for _, job, _ in done)
    assert len(per_job) == N_JOBS and set(per_job.values()) == {1}, per_job
    assert len({pid for *_, pid in done}) == 2  # both workers took part
    with db.session() as s:
        assert {j.attempts for j in s.scalars(select(Job))} == {1}
    db.dispose()


def test_vpet_worker_alone_migrates_and_claims(pg_url, tmp_path):
    """`vpet worker --config` on another machine: migrates a fresh database, claims jobs."""
    import subprocess
    import sys

    import yaml

    from dicom_node.migrate import current_revision, head_revision

    cfg_path = tmp_path / "worker.yaml"
    cfg_path.write_text(yaml.safe_dump({"storage": {"path": str(tmp_path / "w")},
                                        "database": {"url": pg_url},
                                        "workers": {"device": "cpu", "poll_s": 0.1}}))
    proc = subprocess.Popen([sys.executable, "-m", "dicom_node.cli", "worker", "--config",
                             str(cfg_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    db = Database(pg_url)
    try:
        wait_for(lambda: current_revision(db.engine) == head_revision(), timeout=60, poll=0.2)
        jid = create_job(db, series_uid="9.9", series_version=1, rule="r", recipe="ct-to-pet",
                         destinations=[])

        def final() -> Job | None:
            with db.session() as s:
                job = s.get(Job, jid)
            return job if job.state in ("done", "failed", "dead") else None

        job = wait_for(final, timeout=30, poll=0.2)
        assert job.state == "failed" and "no stored instances" in job.reason
    finally:
        proc.terminate()
        proc.wait(20)
        db.dispose()
    assert proc.returncode == 0
