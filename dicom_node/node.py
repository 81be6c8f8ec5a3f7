"""The node: SCP + series tracker + worker processes, started and stopped together.

Why: one object that `vpet serve`, `vpet demo` and the tests use the same way:
`start()` returns once the SCP listens, `wait_idle()` polls the database, `stop()` is graceful.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import threading
import time
from typing import Any, Self

from sqlalchemy import func, select

from dicom_node.config import Config, warn_open_peers
from dicom_node.db import Database, Job, Series
from dicom_node.jobs import FINAL
from dicom_node.metrics import NodeMetrics
from dicom_node.reconcile import mark_running, mark_stopped, reconcile_incoming
from dicom_node.records import release_orphans
from dicom_node.recovery import restart_grace
from dicom_node.scp import StorageSCP
from dicom_node.tracker import SeriesTracker
from dicom_node.worker import Runner, spawn_worker

logger = logging.getLogger(__name__)


class Node:
    """Everything one machine runs; `workers.count` worker processes (0 = receive only)."""

    def __init__(self, config: Config, *, runner: Runner | None = None,
                 tracker_interval_s: float = 0.5) -> None:
        self.config = config
        self.runner = runner
        self.db = Database(config.database_url)
        self.scp = StorageSCP(config, self.db)
        self.tracker = SeriesTracker(config, self.db, tracker_interval_s)
        self._stop_workers = mp.get_context("spawn").Event()
        self.workers: list[Any] = []
        self._stopped = threading.Event()
        self.metrics: NodeMetrics | None = None  # when metrics.port is set

    @property
    def port(self) -> int:
        return self.scp.port

    def start(self) -> Self:
        """Create folders and tables, start SCP, tracker and workers; returns self."""
        for folder in (self.config.storage.path, self.config.incoming_dir,
                       self.config.outbox_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.db.upgrade()
        if mark_running(self.config):  # the last run did not stop cleanly
            reconcile_incoming(self.config, self.db)
        released = release_orphans(self.db)
        if released:
            logger.info("%d series from a previous run marked released", released)
        restart_grace(self.db)
        warn_open_peers(self.config)
        self.scp.start()
        self.tracker.start()
        for i in range(self.config.workers.count):
            self.workers.append(spawn_worker(self.config, i, self._stop_workers, self.runner))
        if self.config.metrics.port:
            self.metrics = NodeMetrics(self.config, self.db, lambda: (
                sum(p.is_alive() for p in self.workers), self.config.workers.count))
            self.metrics.attach(self.scp)
            self.metrics.start()
        logger.info("node %s up on port %d with %d worker(s)", self.config.node.ae_title,
                    self.port, len(self.workers))
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, let workers finish their current job, then stop everything."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.metrics is not None:
            self.metrics.stop()
        self.scp.stop()
        self.tracker.stop()
        self._stop_workers.set()
        deadline = time.monotonic() + timeout
        for proc in self.workers:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                logger.warning("worker pid %s did not stop in time; terminating", proc.pid)
                proc.terminate()
                proc.join(5)
        self.workers.clear()
        self.db.dispose()
        mark_stopped(self.config)
        logger.info("node stopped")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def busy(self) -> bool:
        """True while a series is still receiving or a job is not final."""
        with self.db.session() as s:
            receiving = s.scalar(select(func.count()).select_from(Series)
                                 .where(Series.state == "receiving"))
            open_jobs = s.scalar(select(func.count()).select_from(Job)
                                 .where(Job.state.not_in(FINAL)))
        return bool(receiving or open_jobs)

    def wait_idle(self, timeout: float = 60.0, poll_s: float = 0.2) -> bool:
        """Poll until nothing is receiving or pending; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.busy():
                return True
            time.sleep(poll_s)
        return False

    def _restart_dead_workers(self) -> None:
        """A crashed worker is replaced; its job is reclaimed when the lease ends."""
        for i, proc in enumerate(self.workers):
            if not proc.is_alive() and not self._stop_workers.is_set():
                logger.error("worker pid %s exited with %s; restarting", proc.pid, proc.exitcode)
                self.workers[i] = spawn_worker(self.config, i, self._stop_workers, self.runner)

    def recycle_workers(self) -> None:
        """After a config reload: start fresh workers; old ones finish their job and exit."""
        if not self.workers or self._stopped.is_set():
            return
        old, old_stop = self.workers, self._stop_workers
        self._stop_workers = mp.get_context("spawn").Event()
        self.workers = [spawn_worker(self.config, i, self._stop_workers, self.runner)
                        for i in range(len(old))]
        old_stop.set()
        threading.Thread(target=lambda: [p.join() for p in old], name="vpet-reap",
                         daemon=True).start()
        logger.info("%d worker(s) replaced to apply the reloaded config", len(old))

    def serve_forever(self) -> None:
        """Block until SIGTERM/SIGINT, then stop gracefully (used by `vpet serve`)."""
        done = threading.Event()

        def _handler(signum: int, _frame: object) -> None:
            logger.info("signal %s received: shutting down", signal.Signals(signum).name)
            done.set()

        previous = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not done.wait(1.0):
                self._restart_dead_workers()
        finally:
            self.stop()
            for s, h in previous.items():
                signal.signal(s, h)
