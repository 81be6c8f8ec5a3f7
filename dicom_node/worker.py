"""Worker: claims jobs, runs the pipeline with a warm model, hands outputs to the sender.

Why: image work runs in its own process (spawned, never in an association thread) so a slow
or crashing pipeline cannot stall reception. The lease is renewed while a job runs; if the
process dies, another worker reclaims the job after the lease ends.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from dicom_node.config import Config
from dicom_node.db import Database, Job
from dicom_node.jobs import claim_job, release_job, renew_lease, update_job
from dicom_node.logfmt import configure_worker_logging, job_logger
from dicom_node.records import series_files
from dicom_node.sender import DeliveryStopped, deliver
from pipeline.device import resolve_device
from pipeline.errors import VpetError
from pipeline.types import PipelineResult, Recipe

logger = logging.getLogger(__name__)


class Runner(Protocol):
    """What the worker calls for one job; production uses `pipeline.run`."""

    def __call__(self, files: list[Path], out_dir: Path, *, recipe: Recipe, model: Any,
                 device: str) -> PipelineResult: ...


def pipeline_runner(files: list[Path], out_dir: Path, *, recipe: Recipe, model: Any,
                    device: str) -> PipelineResult:
    """The production runner: `pipeline.run` (imported lazily: torch is heavy)."""
    import pipeline

    return pipeline.run(files, out_dir, recipe=recipe, model=model, device=device, preview=True)


def load_model(recipe: Recipe, device: str) -> Any:
    """Load the recipe's model package once (None = the shipped package for its modality)."""
    from pipeline.models.package import default_package, load_package

    return load_package(recipe.model or default_package(recipe.modality), device=device)


class _Heartbeat(threading.Thread):
    """Renews a job's lease every third of its length while the job runs."""

    def __init__(self, db: Database, job_id: int, owner: str, lease_s: float) -> None:
        super().__init__(name=f"lease-{job_id}", daemon=True)
        self.db, self.job_id, self.owner, self.lease_s = db, job_id, owner, lease_s
        self.done = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.done.wait(self.lease_s / 3):
            try:
                if not renew_lease(self.db, self.job_id, self.owner, self.lease_s):
                    self.lost = True
                    logger.error("job %d: lease lost", self.job_id)
                    return
            except Exception:
                logger.exception("job %d: lease renewal failed", self.job_id)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, VpetError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


class Worker:
    """Job loop for one process. `run_one()` is usable in-process (tests); `run()` loops."""

    def __init__(self, config: Config, *, db: Database | None = None, owner: str | None = None,
                 runner: Runner | None = None,
                 model_loader: Callable[[Recipe, str], Any] | None = None,
                 stop: threading.Event | None = None) -> None:
        self.config = config
        self.db = db or Database(config.database_url)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.runner: Runner = runner or pipeline_runner
        self.model_loader = model_loader or (load_model if runner is None else (lambda r, d: None))
        self.stop = stop or threading.Event()
        self._device: str | None = None
        self._models: dict[Path | str | None, Any] = {}

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = resolve_device(self.config.workers.device)
            logger.info("worker %s uses device %s", self.owner, self._device)
        return self._device

    def model_for(self, recipe: Recipe) -> Any:
        """Warm model cache keyed by package path: loaded once per process."""
        key = recipe.model or recipe.modality  # no package: one shipped default per modality
        if key not in self._models:
            t0 = time.perf_counter()
            self._models[key] = self.model_loader(recipe, self.device)
            logger.info("model %s loaded in %.2f s", recipe.model or "demo package",
                        time.perf_counter() - t0)
        return self._models[key]

    def run(self) -> None:
        self.db.upgrade()  # a stand-alone worker may be the first process on a new database
        logger.info("worker %s started", self.owner)
        while not self.stop.is_set():
            try:
                worked = self.run_one()
            except Exception:
                logger.exception("worker %s: job loop error", self.owner)
                worked = False
            if not worked:
                self.stop.wait(self.config.workers.poll_s)
        logger.info("worker %s stopped", self.owner)

    def run_one(self) -> bool:
        """Claim and process one job; False when none was waiting."""
        w = self.config.workers
        job = claim_job(self.db, self.owner, w.lease_s, w.max_attempts)
        if job is None:
            return False
        log = job_logger(logger, job.id, job.series_uid)
        beat = _Heartbeat(self.db, job.id, self.owner, w.lease_s)
        beat.start()
        try:
            self._process(job, log)
        except DeliveryStopped as exc:
            log.info("stopping: job handed back (%s)", exc)
            release_job(self.db, job.id, self.owner)
        except Exception as exc:
            reason = _describe(exc)
            log.exception("job failed: %s", reason)
            update_job(self.db, job.id, self.owner, state="failed", reason=reason)
        finally:
            beat.done.set()
        return True

    def _process(self, job: Job, log: logging.LoggerAdapter) -> None:
        log.info("job %d: series %s v%d, recipe %s (attempt %d)", job.id, job.series_uid,
                 job.series_version, job.recipe, job.attempts)
        outputs = job.outputs or []
        timings = dict(job.timings or {})
        timings.setdefault("claimed_at", time.time())
        if not (outputs and all(Path(o["path"]).is_file() for o in outputs)):
            outputs, timings = self._synthesize(job, log, timings)
        else:
            log.info("re-using %d output(s) from the outbox", len(outputs))
            update_job(self.db, job.id, self.owner, state="sending")
        if not renew_lease(self.db, job.id, self.owner, self.config.workers.lease_s):
            log.error("lease lost before delivery: leaving the job to its new owner")
            return
        errors = deliver(self.config, self.db, job.id, job.destinations, outputs, self.stop)
        timings["sent_at"] = time.time()
        if errors:
            reason = "; ".join(errors)
            log.error("job dead-lettered: %s", reason)
            update_job(self.db, job.id, self.owner, state="dead", reason=reason, timings=timings)
        else:
            log.info("job %d done: %d output(s) to %s", job.id, len(outputs),
                     ", ".join(job.destinations) or "no destination")
            update_job(self.db, job.id, self.owner, state="done", reason=None, timings=timings)

    def _synthesize(self, job: Job, log: logging.LoggerAdapter,
                    timings: dict) -> tuple[list[dict], dict]:
        files = [Path(p) for p in series_files(self.db, job.series_uid, job.series_version)]
        if not files:
            raise VpetError(f"series {job.series_uid} has no stored instances")
        recipe = self.config.recipe(job.recipe)
        out_dir = self.config.outbox_dir / str(job.id)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        t0 = time.perf_counter()
        model = self.model_for(recipe)
        result = self.runner(files, out_dir, recipe=recipe, model=model, device=self.device)
        timings.update({k: round(float(v), 4) for k, v in (result.timings or {}).items()})
        timings["job_total_s"] = round(time.perf_counter() - t0, 4)
        timings["inferred_at"] = time.time()
        outputs = [
            {"path": str(o.path), "kind": o.kind, "sop_class_uid": o.sop_class_uid,
             "sop_instance_uid": o.sop_instance_uid,
             "series_instance_uid": o.series_instance_uid}
            for o in result.outputs
        ]
        if not update_job(self.db, job.id, self.owner, state="sending", outputs=outputs,
                          timings=timings):
            raise VpetError(f"job {job.id}: lease lost before sending")
        log.info("job %d: %d output(s), %d lesion(s) in %.2f s", job.id, len(outputs),
                 len(result.lesions), timings["job_total_s"])
        return outputs, timings


def worker_main(config_data: dict, name: str, stop: Any, runner: Runner | None = None,
                log_level: str = "INFO", parent_pid: int | None = None) -> None:
    """Entry point of a spawned worker process (the config travels as plain data)."""
    configure_worker_logging(log_level)
    logging.getLogger("pynetdicom").setLevel("DEBUG" if log_level == "DEBUG" else "WARNING")
    local = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, lambda *_: local.set())
    config = Config.model_validate(config_data)
    owner = f"{socket.gethostname()}:{os.getpid()}:{name}"
    _watch_stop(stop, local, parent_pid or os.getppid())
    Worker(config, owner=owner, runner=runner, stop=local).run()


def _watch_stop(shared: Any, local: threading.Event, parent: int) -> None:
    """Bridge the parent's stop event and the parent's death to this process's own event.

    Only `is_set()` is ever called on the shared multiprocessing Event: a process killed
    while blocked in its `wait()` leaves the Event's condition counting a sleeper that never
    wakes, and the parent's `set()` would then hang forever. A `kill -9` of `vpet serve`
    must not leave orphan workers holding the GPU either: the worker stops (after its
    current job) when its parent is gone; the restarted node spawns fresh ones. `parent` is
    the pid the spawning node passed: read here instead, it would already be 1 (init) when
    the node died while this process was still importing torch, and the check never fire.
    """

    def watch() -> None:
        while not local.wait(0.25):
            if shared.is_set():
                local.set()
            elif os.getppid() != parent:
                logger.warning("parent process %d is gone: worker stops", parent)
                local.set()

    threading.Thread(target=watch, name="stop-watch", daemon=True).start()


def spawn_worker(config: Config, index: int, stop: Any, runner: Runner | None = None) -> Any:
    """Start one worker process with the spawn start method (safe with threads and CUDA)."""
    ctx = mp.get_context("spawn")
    proc = ctx.Process(
        target=worker_main, name=f"vpet-worker-{index}",
        args=(config.model_dump(mode="json"), f"w{index}", stop, runner, config.logging.level,
              os.getpid()),
        daemon=False,
    )
    proc.start()
    return proc
