"""Prometheus metrics and a health endpoint for one node (`metrics.host`:`metrics.port`).

Why: an admin must see where time goes and what fails without reading logs. Counts and
gauges are read from the database at scrape time (the database is the truth shared by the
receiver and every worker process, also on other machines); latency histograms are observed
in the node process when a job finishes, from the timestamps workers write to the job row.
Each node has its own CollectorRegistry: no module-level global state.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from dicom_node.config import Config
from dicom_node.db import Database, Delivery, Event, Instance, Job, Series, utcnow

logger = logging.getLogger(__name__)

JOB_STATES = ("queued", "running", "sending", "done", "failed", "dead")
SERIES_STATES = ("receiving", "complete", "queued", "unmatched")
DELIVERY_STATES = ("pending", "sent", "failed", "dead")
# failure kinds: a small fixed label set (event kinds and job outcomes map onto it)
FAILURE_KINDS = ("bad_input", "store_error", "peer_rejected", "busy", "disk_low", "pipeline",
                 "delivery", "lease_expired", "other")
STAGES = ("receive_to_complete", "complete_to_inferred", "inferred_to_sent", "total")
_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def failure_kind(kind: str) -> str:
    """Map an event kind or job outcome onto FAILURE_KINDS."""
    return kind if kind in FAILURE_KINDS else "other"


def _job_failure_kind(state: str, reason: str | None) -> str:
    if state == "failed":
        return "pipeline"
    if (reason or "").startswith("lease of "):
        return "lease_expired"
    return "delivery"


def _epoch(naive_utc: dt.datetime) -> float:
    return naive_utc.replace(tzinfo=dt.UTC).timestamp()


class _DbCollector(Collector):
    """Counts and gauges read from the database at scrape time."""

    def __init__(self, config: Config, db: Database) -> None:
        self.config, self.db = config, db
        self._gpu: Any = None  # torch module when a GPU is visible; False when not

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("vpet_db_up", "1 when the database answered this scrape")
        try:
            families = list(self._from_db())
            up.add_metric([], 1)
        except Exception:
            logger.exception("metrics: database query failed")
            families = []
            up.add_metric([], 0)
        yield up
        yield from families
        free = GaugeMetricFamily("vpet_disk_free_bytes", "Free bytes on the storage volume")
        free.add_metric([], _disk_free(self.config))
        yield free
        yield from self._gpu_metrics()

    def _from_db(self) -> Iterator[Any]:
        with self.db.session() as s:
            instances = s.scalar(select(func.count()).select_from(Instance)) or 0
            series = dict(s.execute(select(Series.state, func.count()).group_by(Series.state))
                          .all())
            jobs = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            deliveries = dict(s.execute(select(Delivery.status, func.count())
                                        .group_by(Delivery.status)).all())
            events = s.execute(select(Event.kind, func.count()).group_by(Event.kind)).all()
            bad_jobs = s.execute(select(Job.state, Job.reason).where(
                Job.state.in_(("failed", "dead")))).all()
        c = CounterMetricFamily("vpet_instances_received", "Instances stored and indexed")
        c.add_metric([], instances)
        yield c
        c = CounterMetricFamily("vpet_series_completed",
                                "Series that completed (routed or unmatched)")
        c.add_metric([], sum(n for st, n in series.items() if st != "receiving"))
        yield c
        g = GaugeMetricFamily("vpet_series", "Series by state", labels=["state"])
        for st in sorted(set(SERIES_STATES) | set(series)):
            g.add_metric([st], series.get(st, 0))
        yield g
        g = GaugeMetricFamily("vpet_jobs", "Jobs by state", labels=["state"])
        for st in JOB_STATES:
            g.add_metric([st], jobs.get(st, 0))
        yield g
        g = GaugeMetricFamily("vpet_queue_depth", "Jobs waiting for a worker")
        g.add_metric([], jobs.get("queued", 0))
        yield g
        g = GaugeMetricFamily("vpet_deliveries", "Per-instance deliveries by status",
                              labels=["status"])
        for st in DELIVERY_STATES:
            g.add_metric([st], deliveries.get(st, 0))
        yield g
        failures = dict.fromkeys(FAILURE_KINDS, 0)
        for kind, n in events:
            failures[failure_kind(kind)] += n
        for state, reason in bad_jobs:
            failures[_job_failure_kind(state, reason)] += 1
        c = CounterMetricFamily("vpet_failures", "Failures by reason kind", labels=["reason"])
        for kind, n in failures.items():
            c.add_metric([kind], n)
        yield c

    def _gpu_metrics(self) -> Iterator[Any]:
        if self._gpu is None:
            self._gpu = False
            if self.config.workers.device != "cpu":
                try:
                    import torch

                    if torch.cuda.is_available():
                        self._gpu = torch
                except Exception:  # no torch / no driver: no GPU metrics
                    logger.debug("no GPU metrics", exc_info=True)
        if not self._gpu:
            return
        used = GaugeMetricFamily("vpet_gpu_memory_used_bytes", "GPU memory in use (all "
                                 "processes)", labels=["device"])
        total = GaugeMetricFamily("vpet_gpu_memory_total_bytes", "GPU memory", labels=["device"])
        for i in range(self._gpu.cuda.device_count()):
            free_b, total_b = self._gpu.cuda.mem_get_info(i)
            used.add_metric([str(i)], total_b - free_b)
            total.add_metric([str(i)], total_b)
        yield used
        yield total


def _disk_free(config: Config) -> int:
    try:
        return shutil.disk_usage(config.storage.path).free
    except OSError:
        return 0


class _HttpServer(ThreadingHTTPServer):
    """No reverse-DNS lookup of the bind address (HTTPServer's getfqdn can take seconds)."""

    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class NodeMetrics:
    """Registry, association counters, stage histograms and the job watcher of one node."""

    def __init__(self, config: Config, db: Database,
                 workers: Callable[[], tuple[int, int]] = lambda: (0, 0)) -> None:
        self.config, self.db, self.workers = config, db, workers
        self.registry = CollectorRegistry(auto_describe=True)
        self.associations = Counter("vpet_associations", "Associations by outcome",
                                    ["outcome"], registry=self.registry)
        for outcome in ("accepted", "rejected", "aborted", "released"):
            self.associations.labels(outcome)
        self.stage_seconds = Histogram("vpet_stage_seconds", "Latency of each stage of a job",
                                       ["stage"], buckets=_BUCKETS, registry=self.registry)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        self.jobs_finished = Counter("vpet_jobs_finished", "Jobs that reached a final state "
                                     "while this node ran", ["state"], registry=self.registry)
        self.registry.register(_DbCollector(config, db))
        self._seen: dict[int, dt.datetime] = {}
        self._since = utcnow()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: ThreadingHTTPServer | None = None

    # -- associations ------------------------------------------------------------------
    def attach(self, scp: Any) -> None:
        """Count associations by outcome (the SCP calls us with each outcome) and expose how
        many are open now (node.max_associations is the limit)."""
        scp.add_listener(lambda outcome: self.associations.labels(outcome).inc())
        Gauge("vpet_associations_open", "Associations open now", registry=self.registry
              ).set_function(scp.open_associations)

    # -- job latencies -----------------------------------------------------------------
    def observe_finished(self) -> int:
        """Observe stage latencies of jobs that became final since the last call."""
        with self.db.session() as s:
            rows = s.execute(
                select(Job.id, Job.state, Job.created_at, Job.updated_at, Job.timings,
                       Series.last_received_at)
                .join(Series, Series.series_uid == Job.series_uid, isouter=True)
                .where(Job.state.in_(("done", "failed", "dead")),
                       Job.updated_at >= self._since - dt.timedelta(seconds=10))
            ).all()
        count = 0
        for job_id, state, created, updated, timings, received in rows:
            if job_id in self._seen:
                continue
            self._seen[job_id] = updated
            self.jobs_finished.labels(state).inc()
            count += 1
            if state == "done":
                self._observe(created, timings or {}, received)
        if rows:
            newest = max(r[3] for r in rows)
            self._since = max(self._since, newest)
            cutoff = self._since - dt.timedelta(seconds=30)
            self._seen = {k: v for k, v in self._seen.items() if v >= cutoff}
        return count

    def _observe(self, created: dt.datetime, t: dict, received: dt.datetime | None) -> None:
        complete = _epoch(created)
        stamps = {"received": _epoch(received) if received else None, "complete": complete,
                  "inferred": t.get("inferred_at"), "sent": t.get("sent_at")}
        pairs = (("receive_to_complete", "received", "complete"),
                 ("complete_to_inferred", "complete", "inferred"),
                 ("inferred_to_sent", "inferred", "sent"), ("total", "received", "sent"))
        for stage, a, b in pairs:
            if stamps[a] is not None and stamps[b] is not None and stamps[b] >= stamps[a]:
                self.stage_seconds.labels(stage).observe(stamps[b] - stamps[a])

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.observe_finished()
            except Exception:
                logger.exception("metrics: job watcher pass failed")

    # -- health ------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict]:
        db_ok = True
        try:
            with self.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            db_ok = False
            logger.warning("health: database unreachable: %s", exc)
        alive, expected = self.workers()
        free = _disk_free(self.config)
        ok = db_ok and alive == expected and free > 0
        return ok, {"status": "ok" if ok else "degraded", "db": db_ok,
                    "workers": {"alive": alive, "expected": expected},
                    "disk_free_bytes": free, "pid": os.getpid(), "time": time.time()}

    # -- HTTP --------------------------------------------------------------------------
    def start(self) -> int:
        """Serve /metrics and /healthz; returns the bound port."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server API name
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, code = (generate_latest(metrics.registry),
                                         "text/plain; version=0.0.4; charset=utf-8", 200)
                elif path in ("/healthz", "/health"):
                    ok, data = metrics.health()
                    body, ctype, code = json.dumps(data).encode(), "application/json", (
                        200 if ok else 503)
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                logger.debug("metrics http: " + fmt, *args)

        settings = self.config.metrics
        self._http = _HttpServer((settings.host, settings.port), Handler)
        threading.Thread(target=self._http.serve_forever, name="vpet-metrics-http",
                         daemon=True).start()
        self._thread = threading.Thread(target=self._watch, name="vpet-metrics-jobs",
                                        daemon=True)
        self._thread.start()
        logger.info("metrics on http://%s:%d/metrics", settings.host, self.port)
        return self.port

    @property
    def port(self) -> int:
        return int(self._http.server_address[1]) if self._http else 0

    def stop(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
