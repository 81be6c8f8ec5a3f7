"""Worker: claim -> run -> send -> done/failed, in-process and as a spawned node worker."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from dicom_node import scu
from dicom_node.db import Job
from dicom_node.node import Node
from dicom_node.worker import Worker
from tests.conftest import make_tiny_ct
from tests.dicom_node.helpers import SC, SEG, failing_runner, fake_runner, stand_in_pacs, wait_for


def _jobs(node: Node) -> list[Job]:
    with node.db.session() as s:
        return list(s.scalars(select(Job).order_by(Job.id)))


def _send_series(node: Node, tmp_path, name: str = "ct") -> None:
    files = make_tiny_ct(tmp_path / name, shape=(2, 8, 8))
    assert all(r.ok for r in scu.send_files(files, "VPET", "127.0.0.1", node.port))


def test_worker_runs_and_delivers(node, tmp_path, dest_port):
    _send_series(node, tmp_path)
    wait_for(lambda: _jobs(node), timeout=10)
    worker = Worker(node.config, db=node.db, runner=fake_runner, owner="test-worker")
    with stand_in_pacs(dest_port) as dest:
        assert worker.run_one()
        assert sorted(c for c, _ in dest.instances) == sorted([SC, SEG])
    (job,) = _jobs(node)
    assert job.state == "done" and job.reason is None and job.lease_owner is None
    assert [o["kind"] for o in job.outputs] == ["sc", "seg"]
    assert "job_total_s" in job.timings and "fake" in job.timings
    outbox = node.config.outbox_dir / str(job.id)
    assert all(Path(o["path"]).parent == outbox for o in job.outputs)
    assert not worker.run_one()  # nothing left


def test_pipeline_error_fails_job_and_worker_continues(node, tmp_path, dest_port):
    _send_series(node, tmp_path, "a")
    wait_for(lambda: len(_jobs(node)) == 1, timeout=10)
    _send_series(node, tmp_path, "b")
    wait_for(lambda: len(_jobs(node)) == 2, timeout=10)
    worker = Worker(node.config, db=node.db, runner=failing_runner)
    assert worker.run_one()
    worker.runner = fake_runner
    with stand_in_pacs(dest_port):
        assert worker.run_one()
    first, second = _jobs(node)
    assert first.state == "failed" and first.reason == "RuntimeError: synthetic pipeline failure"
    assert second.state == "done"


def test_destination_down_fails_job_node_keeps_serving(node, tmp_path, dest_port):
    _send_series(node, tmp_path)
    wait_for(lambda: _jobs(node), timeout=10)
    assert Worker(node.config, db=node.db, runner=fake_runner).run_one()
    (job,) = _jobs(node)
    assert job.state == "dead"  # dead-lettered after the (zero) retries
    assert job.reason.startswith(f"destination pacs (DEST@127.0.0.1:{dest_port}): connection")
    assert len(job.outputs) == 2  # outputs kept for a later resend
    assert scu.echo("VPET", "127.0.0.1", node.port) == 0


def test_spawned_worker_round_trip(make_config, tmp_path, dest_port):
    cfg = make_config(workers={"count": 1, "device": "cpu", "lease_s": 30, "poll_s": 0.1})
    with stand_in_pacs(dest_port) as dest, Node(cfg, runner=fake_runner,
                                                tracker_interval_s=0.1) as node:
        _send_series(node, tmp_path)
        wait_for(lambda: _jobs(node) and _jobs(node)[0].state == "done", timeout=60)
        assert node.wait_idle(10)
        assert sorted(c for c, _ in dest.instances) == sorted([SC, SEG])
        assert node.workers[0].is_alive()
    assert node.workers == []  # stopped and joined
