"""The receiving side over real associations: echo, store, bad input, peer checks, completion."""

from __future__ import annotations

import pydicom
import pynetdicom._config
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from sqlalchemy import select

from dicom_node import scu
from dicom_node.db import Event, Instance, Job, Series
from dicom_node.node import Node
from pipeline.errors import DeliveryError
from tests.conftest import make_tiny_ct
from tests.dicom_node.helpers import wait_for

CT = "1.2.840.10008.5.1.4.1.1.2"


def _associate(port: int, calling: str = "SCANNER", called: str = "VPET"):
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    return ae.associate("127.0.0.1", port, ae_title=called)


def _rows(node: Node, model):
    with node.db.session() as s:
        return list(s.scalars(select(model)))


def test_echo(node):
    assert scu.echo("VPET", "127.0.0.1", node.port, calling_ae="SCANNER") == 0


def test_wrong_called_ae_rejected(node):
    with pytest.raises(DeliveryError, match="rejected"):
        scu.echo("NOTVPET", "127.0.0.1", node.port)


def test_store_tiny_ct(node, tmp_path):
    files = make_tiny_ct(tmp_path / "ct", shape=(4, 16, 16))
    results = scu.send_files(files, "VPET", "127.0.0.1", node.port, calling_ae="SCANNER")
    assert [r.status for r in results] == [0] * 4
    instances = _rows(node, Instance)
    assert len(instances) == 4
    sources = {str(d.SOPInstanceUID): d for d in map(pydicom.dcmread, files)}
    for inst in instances:
        src = sources[inst.sop_instance_uid]
        stored = pydicom.dcmread(inst.path)
        assert stored.SOPInstanceUID == inst.sop_instance_uid
        assert stored.PixelData == src.PixelData  # raw bytes kept
        assert inst.calling_ae == "SCANNER" and inst.sop_class == CT
    (series,) = _rows(node, Series)
    assert series.instance_count == 4 and series.modality == "CT"
    assert series.called_ae == "VPET" and series.body_part == "ABDOMEN"
    assert not list(node.config.incoming_dir.rglob("*.tmp"))
    # completion: association released + idle timeout -> job for the CT rule
    wait_for(lambda: _rows(node, Job), timeout=10)
    (job,) = _rows(node, Job)
    assert job.series_uid == series.series_uid and job.rule == "ct" and job.state == "queued"
    assert job.destinations == ["pacs"]
    assert _rows(node, Series)[0].state == "queued"


def _garbage_file(tmp_path, payload: bytes):
    """Valid preamble + file meta, then bytes that are not a dataset."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "garbage.dcm"
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    with path.open("ab") as fh:
        fh.write(payload)
    return path, meta.MediaStorageSOPInstanceUID


@pytest.mark.parametrize("payload", [b"this is not a DICOM dataset at all" * 4,
                                     b"\x08\x00\x18\x00UI\xff\xff" + b"\x00" * 10])
def test_unparsable_payload_then_good_store(node, tmp_path, payload, monkeypatch):
    # send the file's bytes as they are (pynetdicom would otherwise decode them first)
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)
    path, uid = _garbage_file(tmp_path, payload)
    assoc = _associate(node.port)
    assert assoc.is_established
    rsp = assoc.send_c_store(path)
    assert rsp.Status in (0xC210, 0xC211)
    good = pydicom.dcmread(make_tiny_ct(tmp_path / "ct", shape=(1, 8, 8))[0])
    assert assoc.send_c_store(good).Status == 0x0000
    assoc.release()
    events = _rows(node, Event)
    assert len(events) == 1 and events[0].kind == "bad_input"
    assert events[0].sop_instance_uid == uid and "SCANNER->VPET@127.0.0.1" in events[0].peer
    assert [i.sop_instance_uid for i in _rows(node, Instance)] == [good.SOPInstanceUID]


def test_missing_series_uid(node, tmp_path):
    ds = pydicom.dcmread(make_tiny_ct(tmp_path / "ct", shape=(1, 8, 8))[0])
    del ds.SeriesInstanceUID
    assoc = _associate(node.port)
    assert assoc.send_c_store(ds).Status == 0xC210
    assoc.release()
    (event,) = _rows(node, Event)
    assert "missing (0020,000E) SeriesInstanceUID" in event.detail
    assert event.sop_instance_uid == ds.SOPInstanceUID
    assert _rows(node, Instance) == []
    assert scu.echo("VPET", "127.0.0.1", node.port) == 0  # still serving


def test_traversal_uid_refused(node, tmp_path):
    ds = pydicom.dcmread(make_tiny_ct(tmp_path / "ct", shape=(1, 8, 8))[0])
    ds.StudyInstanceUID = "../../etc"
    assoc = _associate(node.port)
    assert assoc.send_c_store(ds).Status == 0xC210
    assoc.release()
    assert "StudyInstanceUID" in _rows(node, Event)[0].detail
    assert not (node.config.storage.path.parent / "etc").exists()


def test_allowed_peers(make_config):
    cfg = make_config(allowed_peers=[{"ae_title": "SCANNER"},
                                     {"ae_title": "PINNED", "host": "10.9.9.9"}])
    with Node(cfg) as n:
        assert scu.echo("VPET", "127.0.0.1", n.port, calling_ae="SCANNER") == 0
        for calling in ("INTRUDER", "PINNED"):
            with pytest.raises(DeliveryError, match="rejected"):
                scu.echo("VPET", "127.0.0.1", n.port, calling_ae=calling)
        events = _rows(n, Event)
        assert [e.kind for e in events] == ["peer_rejected", "peer_rejected"]
        assert "INTRUDER" in events[0].detail
        assert scu.echo("VPET", "127.0.0.1", n.port, calling_ae="SCANNER") == 0


def test_unmatched_series_is_kept(make_config, tmp_path):
    cfg = make_config(rules=[{"name": "mr", "match": {"modality": "MR"}, "recipe": "mr-to-pet"}])
    with Node(cfg, tracker_interval_s=0.1) as n:
        files = make_tiny_ct(tmp_path / "ct", shape=(2, 8, 8))
        assert all(r.ok for r in scu.send_files(files, "VPET", "127.0.0.1", n.port))
        wait_for(lambda: _rows(n, Series)[0].state == "unmatched", timeout=10)
        assert _rows(n, Job) == [] and len(_rows(n, Instance)) == 2
        assert n.wait_idle(5)


def test_no_completion_while_association_open(node, tmp_path):
    files = make_tiny_ct(tmp_path / "ct", shape=(2, 8, 8))
    assoc = _associate(node.port)
    assert assoc.send_c_store(files[0]).Status == 0
    # well past timeout_s (0.3 s) with the association still open: still receiving
    with pytest.raises(AssertionError):
        wait_for(lambda: _rows(node, Series)[0].state != "receiving", timeout=1.0)
    assert assoc.send_c_store(files[1]).Status == 0
    assoc.release()
    wait_for(lambda: _rows(node, Series)[0].state == "queued", timeout=10)
    assert _rows(node, Series)[0].instance_count == 2


def test_aborted_association_also_completes(node, tmp_path):
    files = make_tiny_ct(tmp_path / "ct", shape=(1, 8, 8))
    assoc = _associate(node.port)
    assert assoc.send_c_store(files[0]).Status == 0
    assoc.abort()
    wait_for(lambda: _rows(node, Series)[0].state == "queued", timeout=10)


def test_late_instance_reopens_series(node, tmp_path):
    files = make_tiny_ct(tmp_path / "ct", shape=(3, 8, 8))
    scu.send_files(files[:2], "VPET", "127.0.0.1", node.port)
    wait_for(lambda: len(_rows(node, Job)) == 1, timeout=10)
    scu.send_files(files[2:], "VPET", "127.0.0.1", node.port)
    wait_for(lambda: len(_rows(node, Job)) == 2, timeout=10)
    jobs = sorted(_rows(node, Job), key=lambda j: j.id)
    assert [j.series_version for j in jobs] == [1, 2]
    (series,) = _rows(node, Series)
    assert series.version == 2 and series.instance_count == 3


def test_source_address_recorded_and_routed_on(make_config, tmp_path):
    """The sender's IP lands in series.source_address; a rule on 127.0.0.0/8 matches it and a
    rule on another network does not."""
    rules = [{"name": "elsewhere", "priority": 10, "match": {"source_address": "10.0.0.0/8"},
              "recipe": "ct-to-pet", "destinations": ["pacs"]},
             {"name": "loopback", "match": {"source_address": "127.0.0.0/8"},
              "recipe": "ct-to-pet", "destinations": ["pacs"]}]
    node = Node(make_config(rules=rules), tracker_interval_s=0.1).start()
    try:
        files = make_tiny_ct(tmp_path / "ct", shape=(2, 8, 8))
        assert all(r.ok for r in scu.send_files(files, "VPET", "127.0.0.1", node.port,
                                                calling_ae="SCANNER"))
        (series,) = wait_for(lambda: [s for s in _rows(node, Series) if s.state != "receiving"])
        assert series.source_address == "127.0.0.1"
        (job,) = _rows(node, Job)
        assert job.rule == "loopback"
    finally:
        node.stop()


def test_reactor_parked_before_each_send(node):
    """scu.quiesce_reactor returns only with the association's reactor blocked in its wait, so
    a fast C-STORE response cannot be taken by it (pynetdicom 3.0 pause race); 200 echoes on
    one association all get their answer."""
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", node.port, ae_title="VPET")
    assert assoc.is_established
    try:
        scu.quiesce_reactor(assoc)
        assert len(assoc._reactor_checkpoint._cond._waiters) == 1  # the reactor, waiting
        assoc._reactor_checkpoint.set()
        statuses = []
        for _ in range(200):
            scu.quiesce_reactor(assoc)
            statuses.append(int(assoc.send_c_echo().get("Status", -1)))
        assert statuses == [0] * 200
    finally:
        assoc.release()
