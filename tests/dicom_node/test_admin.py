"""`vpet jobs list|show|retry|cancel` and `vpet status` against a node's database (JSON)."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from dicom_node.cli import app
from dicom_node.db import Database, record_event
from dicom_node.jobs import create_job, update_job
from dicom_node.records import ReceivedInstance, record_instance


def _setup(tmp_path):
    cfg = tmp_path / "vpet.yaml"
    cfg.write_text(yaml.safe_dump({"storage": {"path": "data"}}))
    db = Database(f"sqlite:///{tmp_path / 'data' / 'vpet.sqlite3'}")
    db.create_all()
    ids = [create_job(db, series_uid=f"1.2.{i}", series_version=1, rule="ct",
                      recipe="ct-to-pet", destinations=["pacs"]) for i in range(3)]
    update_job(db, ids[0], state="failed", reason="destination pacs: refused")
    update_job(db, ids[1], state="running", lease_owner="w1")
    record_instance(db, ReceivedInstance("1.2.9.1", "1.2.9", "1.2", "1.2.840.10008.5.1.4.1.1.2",
                                         "/x", "SCANNER", "VPET", "127.0.0.1/k", "CT"))
    record_event(db, "peer_rejected", "calling AE 'X' from 127.0.0.1 is not in allowed_peers")
    return str(cfg), ids


def _json(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_jobs_list_show_and_filters(tmp_path):
    cfg, ids = _setup(tmp_path)
    jobs = _json(["jobs", "list", "-c", cfg, "--json"])
    assert [j["id"] for j in jobs] == ids[::-1]
    assert [j["state"] for j in _json(["jobs", "list", "-c", cfg, "--state", "failed",
                                       "--json"])] == ["failed"]
    shown = _json(["jobs", "show", str(ids[0]), "-c", cfg, "--json"])
    assert shown["reason"] == "destination pacs: refused" and shown["deliveries"] == []
    table = CliRunner().invoke(app, ["jobs", "list", "-c", cfg])
    assert table.exit_code == 0 and "refused" in table.stdout
    missing = CliRunner().invoke(app, ["jobs", "show", "999", "-c", cfg])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_retry_and_cancel(tmp_path):
    cfg, ids = _setup(tmp_path)
    retried = _json(["jobs", "retry", str(ids[0]), "-c", cfg, "--json"])
    assert retried["state"] == "queued" and retried["reason"] is None
    assert retried["attempts"] == 0
    cancelled = _json(["jobs", "cancel", str(ids[1]), "-c", cfg, "--json"])
    assert cancelled["state"] == "failed" and "cancelled by operator" in cancelled["reason"]
    assert cancelled["lease_owner"] is None
    again = CliRunner().invoke(app, ["jobs", "cancel", str(ids[1]), "-c", cfg])
    assert again.exit_code == 1 and "already failed" in again.output
    busy = CliRunner().invoke(app, ["jobs", "retry", str(ids[2]), "-c", cfg])
    assert busy.exit_code == 1 and "only done, failed or dead" in busy.output


def test_status(tmp_path):
    cfg, _ids = _setup(tmp_path)
    status = _json(["status", "-c", cfg, "--json"])
    assert status["jobs"]["failed"] == 1 and status["jobs"]["running"] == 1
    assert status["queue_depth"] == 1 and status["active"] == 1
    assert status["series"] == {"receiving": 1}
    assert status["receiving"][0]["series_uid"] == "1.2.9"
    assert status["last_errors"][0]["kind"] == "peer_rejected"
    assert status["failed_jobs"][0]["reason"] == "destination pacs: refused"
    table = CliRunner().invoke(app, ["status", "-c", cfg])
    assert table.exit_code == 0 and "peer_rejected" in table.stdout
