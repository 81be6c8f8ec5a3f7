"""Disk guard: below the free-space threshold associations are refused, stores get 0xA700,
with a log line and an event row, and nothing half-written is left behind."""

from __future__ import annotations

import logging

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from sqlalchemy import select

from dicom_node import scu
from dicom_node.db import Event, Instance
from dicom_node.node import Node
from dicom_node.storage import disk_shortage
from pipeline.errors import DeliveryError
from tests.conftest import make_tiny_ct

CT = "1.2.840.10008.5.1.4.1.1.2"


def _events(node: Node) -> list[Event]:
    with node.db.session() as s:
        return list(s.scalars(select(Event)))


def test_disk_shortage_thresholds(tmp_path):
    assert disk_shortage(tmp_path, 0, 100) is None
    assert "storage.min_free_gb" in disk_shortage(tmp_path, 1e9, 100)
    assert "storage.max_used_percent" in disk_shortage(tmp_path, 0, 1e-9)
    assert disk_shortage(tmp_path / "not" / "yet", 0, 100) is None  # measured on the parent


def test_association_refused_when_disk_low(make_config, tmp_path, caplog):
    # more than any real disk has free
    cfg = make_config(storage={"path": str(tmp_path / "node"), "min_free_gb": 1e9})
    with Node(cfg) as n, caplog.at_level(logging.WARNING, logger="dicom_node.scp"):
        with pytest.raises(DeliveryError, match="rejected"):
            scu.echo("VPET", "127.0.0.1", n.port, calling_ae="SCANNER")
        events = _events(n)
        assert events and {e.kind for e in events} == {"disk_low"}  # scu.echo may retry
        event = events[0]
        assert "storage.min_free_gb" in event.detail and str(tmp_path) in event.detail
        assert "SCANNER->VPET@127.0.0.1" in event.peer
        assert any("rejecting association" in r.message and "disk low" in r.message
                   for r in caplog.records)


def test_store_answered_a700_when_disk_fills_mid_association(node, tmp_path, caplog):
    files = make_tiny_ct(tmp_path / "ct", shape=(2, 8, 8))
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(CT, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", node.port, ae_title="VPET")
    assert assoc.is_established
    assert assoc.send_c_store(pydicom.dcmread(files[0])).Status == 0x0000
    node.config.storage.max_used_percent = 1e-9  # the disk "fills up" now
    node.scp.disk_guard.invalidate()
    with caplog.at_level(logging.ERROR, logger="dicom_node.scp"):
        assert assoc.send_c_store(pydicom.dcmread(files[1])).Status == 0xA700
    assoc.release()
    assert any("0xA700" in r.message for r in caplog.records)
    assert [e.kind for e in _events(node)] == ["disk_low"]
    with node.db.session() as s:
        assert len(list(s.scalars(select(Instance)))) == 1
    stored = [p for p in node.config.incoming_dir.rglob("*") if p.is_file()]
    assert len(stored) == 1 and not [p for p in stored if p.suffix == ".tmp"]


def test_enospc_while_writing_leaves_nothing(node, tmp_path, monkeypatch):
    """The disk fills while the dataset streams in: 0xA700, no file, no row, node serves on."""
    import errno

    from dicom_node import intake

    def full_disk(fd: int, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    files = make_tiny_ct(tmp_path / "ct", shape=(2, 8, 8))
    monkeypatch.setattr(intake.os, "write", full_disk)
    results = scu.send_files(files[:1], "VPET", "127.0.0.1", node.port, calling_ae="SCANNER")
    monkeypatch.undo()
    assert [r.status for r in results] == [0xA700]
    assert not [p for p in node.config.incoming_dir.rglob("*") if p.is_file()]
    assert [e.kind for e in _events(node)] == ["disk_low"]
    node.scp.disk_guard.invalidate()
    assert [r.status for r in scu.send_files(files[1:], "VPET", "127.0.0.1", node.port,
                                             calling_ae="SCANNER")] == [0]


def test_enospc_at_flush_answers_a700_and_keeps_only_complete_files(node, tmp_path,
                                                                     monkeypatch):
    """The flush fails after the row was committed alongside it: the sender hears 0xA700 (it
    will re-send); what stays on disk is the complete file its row names, never a fragment."""
    import errno

    from dicom_node import storage

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    files = make_tiny_ct(tmp_path / "ct", shape=(1, 8, 8))
    monkeypatch.setattr(storage.os, "fsync", full_disk)
    results = scu.send_files(files, "VPET", "127.0.0.1", node.port, calling_ae="SCANNER")
    monkeypatch.undo()
    assert [r.status for r in results] == [0xA700]
    assert [e.kind for e in _events(node)] == ["disk_low"]
    kept = [p for p in node.config.incoming_dir.rglob("*") if p.is_file()]
    assert not [p for p in kept if p.suffix == ".tmp"]
    with node.db.session() as s:
        indexed = {row.path for row in s.scalars(select(Instance))}
    assert {str(p) for p in kept} == indexed
    for path in kept:
        assert pydicom.dcmread(path).PixelData == pydicom.dcmread(files[0]).PixelData
    # the re-send replaces it and is acknowledged
    node.scp.disk_guard.invalidate()
    assert [r.status for r in scu.send_files(files, "VPET", "127.0.0.1", node.port,
                                             calling_ae="SCANNER")] == [0]
