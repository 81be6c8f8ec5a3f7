"""Observability: /metrics after a round trip (counters parsed), /healthz, structured logs."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dicom_node import scu
from dicom_node.db import Database
from dicom_node.logfmt import JsonFormatter, job_logger
from dicom_node.metrics import FAILURE_KINDS, NodeMetrics
from dicom_node.node import Node
from tests.conftest import free_port, make_tiny_ct
from tests.dicom_node.helpers import fake_runner, stand_in_pacs, wait_for


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_after_round_trip(make_config, tmp_path, dest_port):
    cfg = make_config(workers={"count": 1, "device": "cpu", "lease_s": 30, "poll_s": 0.1},
                      metrics={"port": free_port()})
    with stand_in_pacs(dest_port) as dest, Node(cfg, runner=fake_runner,
                                                tracker_interval_s=0.1) as node:
        files = make_tiny_ct(tmp_path / "ct", shape=(3, 8, 8))
        assert all(r.ok for r in scu.send_files(files, "VPET", "127.0.0.1", node.port))
        wait_for(lambda: len(dest.instances) == 2, timeout=60)
        port = node.metrics.port
        def observed() -> dict | None:
            d = _scrape(port)
            return d if d.get(("vpet_stage_seconds_count", (("stage", "total"),)), 0) else None

        m = wait_for(observed, timeout=15, poll=0.3)
        assert m[("vpet_associations_open", ())] == 0
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="VPET")
        try:
            assert _scrape(port)[("vpet_associations_open", ())] == 1
        finally:
            assoc.release()
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status == 200
        data = json.loads(health.read())
        assert data["db"] is True and data["workers"] == {"alive": 1, "expected": 1}
        assert data["disk_free_bytes"] > 0
    assert m[("vpet_associations_total", (("outcome", "accepted"),))] >= 1
    assert m[("vpet_associations_total", (("outcome", "released"),))] >= 1
    assert m[("vpet_instances_received_total", ())] == 3
    assert m[("vpet_series_completed_total", ())] == 1
    assert m[("vpet_jobs", (("state", "done"),))] == 1
    assert m[("vpet_jobs", (("state", "queued"),))] == 0
    assert m[("vpet_queue_depth", ())] == 0
    assert m[("vpet_deliveries", (("status", "sent"),))] == 2
    assert m[("vpet_jobs_finished_total", (("state", "done"),))] == 1
    assert m[("vpet_db_up", ())] == 1
    for stage in ("receive_to_complete", "complete_to_inferred", "inferred_to_sent", "total"):
        assert m[("vpet_stage_seconds_count", (("stage", stage),))] == 1
    assert {k[1][0][1] for k in m if k[0] == "vpet_failures_total"} == set(FAILURE_KINDS)


def test_health_degraded_when_a_worker_is_missing(make_config):
    cfg = make_config(metrics={"port": free_port()})
    n = NodeMetrics(cfg, Database(cfg.database_url), lambda: (0, 2))
    n.db.upgrade()
    n.start()
    try:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{n.port}/healthz", timeout=5)
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            assert json.loads(exc.read())["workers"] == {"alive": 0, "expected": 2}
    finally:
        n.stop()


def test_json_log_lines_carry_job_and_series():
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log = logging.getLogger("vpet.test.jsonlog")
    log.addHandler(Keep())
    log.setLevel(logging.INFO)
    job_logger(log, 7, "1.2.3").info("hello %s", "x")
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["msg"] == "hello x" and line["job_id"] == 7 and line["series_uid"] == "1.2.3"
