"""Delivery: a real Storage SCP receives the exact SOP classes; failures name the destination."""

from __future__ import annotations

import pydicom
from sqlalchemy import select

from dicom_node import scu
from dicom_node.db import Database, Delivery
from dicom_node.jobs import create_job
from dicom_node.sender import deliver
from tests.conftest import free_port, make_tiny_ct
from tests.dicom_node.helpers import SC, SEG, stand_in_pacs, write_object


def _outputs(tmp_path) -> list[dict]:
    ref = pydicom.dcmread(make_tiny_ct(tmp_path / "ct", shape=(1, 8, 8))[0])
    out = []
    for name, cls in (("sc.dcm", SC), ("seg.dcm", SEG)):
        o = write_object(tmp_path / name, cls, ref, "1.2.3.4")
        out.append({"path": str(o.path), "sop_class_uid": o.sop_class_uid,
                    "sop_instance_uid": o.sop_instance_uid})
    return out


def _setup(make_config, tmp_path, **overrides):
    cfg = make_config(**overrides)
    db = Database(cfg.database_url)
    db.create_all()
    job_id = create_job(db, series_uid="1.2", series_version=1, rule="ct", recipe="ct-to-pet",
                        destinations=["pacs"])
    return cfg, db, job_id


def _deliveries(db):
    with db.session() as s:
        return list(s.scalars(select(Delivery)))


def test_send_files_to_real_scp(tmp_path, dest_port):
    outputs = _outputs(tmp_path)
    with stand_in_pacs(dest_port) as dest:
        results = scu.send_files([o["path"] for o in outputs], "DEST", "127.0.0.1", dest_port)
        assert [r.ok for r in results] == [True, True]
        assert sorted(dest.instances) == sorted(
            (o["sop_class_uid"], o["sop_instance_uid"]) for o in outputs)
        assert scu.echo("DEST", "127.0.0.1", dest_port) == 0


def test_deliver_records_per_instance(make_config, tmp_path, dest_port):
    cfg, db, job_id = _setup(make_config, tmp_path)
    outputs = _outputs(tmp_path)
    with stand_in_pacs(dest_port) as dest:
        assert deliver(cfg, db, job_id, ["pacs"], outputs) == []
        assert {c for c, _ in dest.instances} == {SC, SEG}
    rows = _deliveries(db)
    assert sorted(r.status for r in rows) == ["sent", "sent"]
    assert all(r.destination == "pacs" and r.attempts == 1 for r in rows)


def test_destination_down_names_destination(make_config, tmp_path, dest_port):
    cfg, db, job_id = _setup(make_config, tmp_path, sender={"retries": 2, "backoff_s": 0.01,
                                                            "backoff_max_s": 0.02})
    errors = deliver(cfg, db, job_id, ["pacs"], _outputs(tmp_path))
    assert len(errors) == 1
    assert errors[0].startswith(f"destination pacs (DEST@127.0.0.1:{dest_port}): ")
    assert "Connection refused" in errors[0] and "dead after 3 attempt(s)" in errors[0]
    rows = _deliveries(db)
    assert all(r.status == "dead" and r.attempts == 3 for r in rows)


def test_refused_context_is_per_destination_error(make_config, tmp_path, dest_port):
    other_port = free_port()
    cfg, db, job_id = _setup(make_config, tmp_path, destinations={
        "pacs": {"ae_title": "DEST", "host": "127.0.0.1", "port": dest_port},
        "sc-only": {"ae_title": "SCONLY", "host": "127.0.0.1", "port": other_port},
    })
    outputs = _outputs(tmp_path)
    with stand_in_pacs(dest_port) as full, stand_in_pacs(other_port, "SCONLY", [SC]) as sc_only:
        errors = deliver(cfg, db, job_id, ["sc-only", "pacs"], outputs)
        assert len(errors) == 1 and errors[0].startswith("destination sc-only (SCONLY@")
        assert "presentation context refused" in errors[0]
        assert len(full.instances) == 2  # the other destination still got everything
        assert [c for c, _ in sc_only.instances] == [SC]
    status = {(r.destination, r.sop_instance_uid): r.status for r in _deliveries(db)}
    assert status[("sc-only", outputs[0]["sop_instance_uid"])] == "sent"
    assert status[("sc-only", outputs[1]["sop_instance_uid"])] == "dead"
    # a retry sends only what is missing
    with stand_in_pacs(other_port, "SCONLY") as sc_now:
        assert deliver(cfg, db, job_id, ["sc-only"], outputs) == []
        assert [c for c, _ in sc_now.instances] == [SEG]
