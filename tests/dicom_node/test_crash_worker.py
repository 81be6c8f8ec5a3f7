"""kill -9 of a worker mid-inference and of the sender mid-send (a worker delivering).

Mid-inference: the lease expires, the other worker reclaims the job, runs it again and
delivers once. Mid-send: the replacement worker re-uses the outbox and sends only what was
not yet recorded as sent; at most the one instance in flight at the kill reaches the PACS
twice, with the same SOP Instance UID (deterministic UIDs: the PACS stores it once).
"""

from __future__ import annotations

import functools
import os
import signal

from sqlalchemy import func, select

from dicom_node import scu
from dicom_node.db import Delivery, Job
from dicom_node.node import Node
from tests.conftest import make_tiny_ct
from tests.dicom_node.crash_helpers import deterministic_runner, runs
from tests.dicom_node.helpers import stand_in_pacs, wait_for


def _job(node: Node) -> Job | None:
    with node.db.session() as s:
        return s.scalar(select(Job).order_by(Job.id))


def _owner_pid(job: Job) -> int:
    return int(job.lease_owner.split(":")[1])


def _send(node: Node, tmp_path) -> None:
    files = make_tiny_ct(tmp_path / "ct", shape=(2, 8, 8))
    assert all(r.ok for r in scu.send_files(files, "VPET", "127.0.0.1", node.port))


def test_kill_worker_mid_inference(make_config, tmp_path, dest_port):
    cfg = make_config(workers={"count": 2, "device": "cpu", "lease_s": 1.5, "poll_s": 0.1,
                               "max_attempts": 3})
    runner = functools.partial(deterministic_runner, outputs=3, sleep_s=2.0)
    with stand_in_pacs(dest_port) as dest, Node(cfg, runner=runner,
                                               tracker_interval_s=0.1) as node:
        _send(node, tmp_path)
        wait_for(lambda: any(r[0] == "start" for r in runs(cfg.storage.path)), timeout=60)
        victim = _owner_pid(_job(node))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: _job(node).state == "done", timeout=40, poll=0.1)
        job = _job(node)
    assert job.attempts == 2
    log = runs(cfg.storage.path)
    assert [r[0] for r in log] == ["start", "start", "end"]
    assert log[0][2] == victim and log[2][2] != victim
    assert len(dest.counts) == 3 and set(dest.counts.values()) == {1}


def test_kill_sender_mid_send(make_config, tmp_path, dest_port):
    cfg = make_config(workers={"count": 1, "device": "cpu", "lease_s": 1.5, "poll_s": 0.1},
                      sender={"retries": 0, "backoff_s": 0, "timeout_s": 10})
    runner = functools.partial(deterministic_runner, outputs=6)
    with stand_in_pacs(dest_port, delay_s=0.3) as dest, Node(cfg, runner=runner,
                                                            tracker_interval_s=0.1) as node:
        _send(node, tmp_path)

        def sent() -> int:
            with node.db.session() as s:
                return s.scalar(select(func.count()).select_from(Delivery)
                                .where(Delivery.status == "sent")) or 0

        wait_for(lambda: sent() >= 2, timeout=60, poll=0.02)
        victim = _owner_pid(_job(node))
        os.kill(victim, signal.SIGKILL)
        with node.db.session() as s:
            before = set(s.scalars(select(Delivery.sop_instance_uid)
                                   .where(Delivery.status == "sent")))
        assert 2 <= len(before) < 6  # killed mid-send
        node.workers[0].join(5)
        node._restart_dead_workers()  # what `vpet serve` does every second
        wait_for(lambda: _job(node).state == "done", timeout=40, poll=0.1)
        job = _job(node)
    assert job.attempts == 2
    assert [r[0] for r in runs(cfg.storage.path)] == ["start", "end"]  # outbox re-used
    assert len(dest.counts) == 6  # everything delivered
    assert all(dest.counts[uid] == 1 for uid in before)  # recorded sends never repeated
    assert sum(dest.counts.values()) - 6 <= 1  # only the instance in flight, same UID


def test_worker_whose_node_died_before_it_started_stops(make_config):
    """A node killed while its worker was still starting (importing torch) must not leave the
    worker running: it compares its parent with the pid the node passed, not with whatever
    parent it finds once started (init, by then)."""
    import multiprocessing as mp
    import subprocess

    from dicom_node.worker import worker_main

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that is no longer our worker's parent
    ctx = mp.get_context("spawn")
    stop = ctx.Event()  # never set: only the parent check can end the worker
    proc = ctx.Process(target=worker_main, args=(make_config().model_dump(mode="json"), "w0",
                                                  stop, None, "WARNING", gone.pid))
    proc.start()
    proc.join(90)
    alive = proc.is_alive()
    if alive:
        proc.kill()
    assert not alive and proc.exitcode == 0
