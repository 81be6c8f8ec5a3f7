"""The node's own Upper Layer acceptor over raw sockets: misbehaving peers end their own
association with a clear outcome, leave nothing half-written, and the node serves on."""

from __future__ import annotations

import os
import socket
import struct
import time

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, PatientRootQueryRetrieveInformationModelFind
from sqlalchemy import select

from dicom_node import scu
from dicom_node.db import Instance
from dicom_node.node import Node
from dicom_node.ul import pdu as P
from tests.conftest import free_port, make_tiny_ct
from tests.dicom_node.helpers import wait_for

CT = "1.2.840.10008.5.1.4.1.1.2"


def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(value)) + value


def associate_rq(called: str = "VPET", calling: str = "RAW", app_context: str =
                 P.APPLICATION_CONTEXT, contexts=((1, CT, ("1.2.840.10008.1.2.1",)),),
                 max_pdu: int = 16384) -> bytes:
    body = struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode()
    body += bytes(32) + _item(0x10, app_context.encode())
    for cid, abstract, syntaxes in contexts:
        sub = _item(0x30, abstract.encode()) + b"".join(_item(0x40, t.encode())
                                                        for t in syntaxes)
        body += _item(0x20, bytes([cid, 0, 0, 0]) + sub)
    body += _item(0x50, _item(0x51, struct.pack(">L", max_pdu)))
    return struct.pack(">BxL", 0x01, len(body)) + body


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    head = b""
    while len(head) < 6:
        chunk = sock.recv(6 - len(head))
        if not chunk:
            return -1, b""
        head += chunk
    kind, length = struct.unpack(">BxL", head)
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return kind, body


def _raw(node: Node) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    return sock


def _still_serves(node: Node) -> None:
    assert scu.echo("VPET", "127.0.0.1", node.port, calling_ae="SCANNER") == 0


def _pdata(cid: int, control: int, data: bytes) -> bytes:
    pdv = struct.pack(">LBB", len(data) + 2, cid, control) + data
    return struct.pack(">BxL", 0x04, len(pdv)) + pdv


def _store_command(sop_uid: str, message_id: int = 1) -> bytes:
    ds = pydicom.Dataset()
    ds.AffectedSOPClassUID = CT
    ds.CommandField = 0x0001
    ds.MessageID = message_id
    ds.Priority = 0
    ds.CommandDataSetType = 0x0000
    ds.AffectedSOPInstanceUID = sop_uid
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)
    body = buf.getvalue()
    return struct.pack("<HHL", 0, 0, 4) + struct.pack("<L", len(body)) + body


def test_garbage_is_aborted_and_node_serves_on(node):
    with _raw(node) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        kind, _ = _read_pdu(sock)
        assert kind in (P.ABORT, -1)
    _still_serves(node)


@pytest.mark.parametrize("request_kwargs,rj", [
    ({"app_context": "1.2.3.4"}, (1, 1, 2)),  # application context name not supported
    ({"called": "SOMEONE"}, (1, 1, 7)),  # called AE title not recognized
])
def test_bad_association_request_rejected_with_reason(node, request_kwargs, rj):
    with _raw(node) as sock:
        sock.sendall(associate_rq(**request_kwargs))
        kind, body = _read_pdu(sock)
    assert kind == P.ASSOCIATE_RJ and tuple(body[1:4]) == rj
    _still_serves(node)


def test_unsupported_abstract_syntax_gets_its_own_result(node):
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", node.port, ae_title="VPET")
    try:
        assert assoc.is_established
        results = {str(cx.abstract_syntax): cx.result for cx in assoc.rejected_contexts}
        assert results == {str(PatientRootQueryRetrieveInformationModelFind): 0x03}
        assert [str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts] == [
            ExplicitVRLittleEndian]
    finally:
        assoc.release()


def test_requestor_transfer_syntax_preference_is_kept(node):
    with _raw(node) as sock:
        sock.sendall(associate_rq(contexts=((1, CT, ("9.9.9", "1.2.840.10008.1.2.1",
                                                     "1.2.840.10008.1.2")),)))
        kind, body = _read_pdu(sock)
        assert kind == P.ASSOCIATE_AC
        assert b"1.2.840.10008.1.2.1" in body and b"9.9.9" not in body
        sock.sendall(struct.pack(">BxL", P.RELEASE_RQ, 4) + bytes(4))
        assert _read_pdu(sock)[0] == P.RELEASE_RP


def test_pdv_on_unaccepted_context_aborts(node):
    with _raw(node) as sock:
        sock.sendall(associate_rq())
        assert _read_pdu(sock)[0] == P.ASSOCIATE_AC
        sock.sendall(_pdata(7, 0x03, b"\x00" * 8))
        assert _read_pdu(sock)[0] == P.ABORT
    _still_serves(node)


def test_oversized_pdu_aborts(make_config):
    node = Node(make_config(node={"ae_title": "VPET", "port": free_port(), "max_pdu": 16384})).start()
    try:
        with _raw(node) as sock:
            sock.sendall(associate_rq())
            assert _read_pdu(sock)[0] == P.ASSOCIATE_AC
            sock.sendall(struct.pack(">BxL", 0x04, 0x7FFFFFFF))
            assert _read_pdu(sock)[0] == P.ABORT
        _still_serves(node)
    finally:
        node.stop()


def _one_slice(tmp_path) -> tuple[pydicom.Dataset, bytes]:
    """A tiny CT slice and its dataset bytes as they travel in P-DATA (no Part 10 header)."""
    (path,) = make_tiny_ct(tmp_path / "ct", shape=(1, 16, 16))
    ds = pydicom.dcmread(path)
    return ds, path.read_bytes()[132 + 12 + ds.file_meta.FileMetaInformationGroupLength:]


def _open_store(node: Node, ds: pydicom.Dataset, message_id: int = 1) -> socket.socket:
    """An accepted raw association with a C-STORE-RQ command sent (the dataset to follow)."""
    sock = _raw(node)
    sock.sendall(associate_rq())
    assert _read_pdu(sock)[0] == P.ASSOCIATE_AC
    sock.sendall(_pdata(1, 0x03, _store_command(str(ds.SOPInstanceUID), message_id)))
    return sock


def _files_being_received(node: Node) -> list[str]:
    """Temp files the in-process node holds open under its partial folder (unnamed O_TMPFILE
    files show in /proc as '<folder>/#<inode> (deleted)'), plus any named leftovers."""
    partial = str(node.config.incoming_dir / ".partial")
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(partial + "/"):
            held.append(target)
    return held + [str(p) for p in node.config.incoming_dir.rglob("*.tmp")]


def test_peer_vanishing_mid_dataset_leaves_nothing(node, tmp_path):
    ds, dataset = _one_slice(tmp_path)
    with _open_store(node, ds) as sock:
        sock.sendall(_pdata(1, 0x00, dataset[:200]))  # first fragment only, then gone
        assert wait_for(lambda: _files_being_received(node), timeout=10)
    assert wait_for(lambda: not _files_being_received(node), timeout=10)
    assert not list((node.config.incoming_dir / ".partial").iterdir())
    with node.db.session() as s:
        assert not list(s.scalars(select(Instance)))
    _still_serves(node)


def test_raw_store_in_many_fragments(node, tmp_path):
    """A dataset split into odd-sized fragments is reassembled byte for byte."""
    ds, dataset = _one_slice(tmp_path)
    with _open_store(node, ds, message_id=7) as sock:
        pieces = [dataset[i:i + 37] for i in range(0, len(dataset), 37)]
        for i, piece in enumerate(pieces):
            sock.sendall(_pdata(1, 0x02 if i == len(pieces) - 1 else 0x00, piece))
        kind, body = _read_pdu(sock)
        assert kind == P.P_DATA_TF
        from pydicom.filebase import DicomBytesIO
        from pydicom.filereader import read_dataset
        response = read_dataset(DicomBytesIO(body[6:]), True, True)
        assert response.Status == 0 and response.MessageIDBeingRespondedTo == 7
        assert response.CommandField == 0x8001
        sock.sendall(struct.pack(">BxL", P.RELEASE_RQ, 4) + bytes(4))
        assert _read_pdu(sock)[0] == P.RELEASE_RP
    with node.db.session() as s:
        (inst,) = s.scalars(select(Instance))
    stored = pydicom.dcmread(inst.path)
    assert stored.PixelData == ds.PixelData
    assert stored.file_meta.SourceApplicationEntityTitle == "RAW"


def test_silent_connection_is_dropped_after_the_associate_timeout(make_config):
    node = Node(make_config(node={"ae_title": "VPET", "port": free_port(),
                                     "associate_timeout_s": 0.5})).start()
    try:
        with _raw(node) as sock:
            sock.settimeout(10)
            kind, _ = _read_pdu(sock)  # nothing sent: the node gives up first
            assert kind in (P.ABORT, -1)
        _still_serves(node)
    finally:
        node.stop()


def test_sender_stalled_mid_dataset_is_aborted_after_the_idle_timeout(make_config, tmp_path):
    """Established association, half a dataset, then silence: aborted after idle_timeout_s
    (kernel receive timeout on the blocking socket), no partial file left, node serves on."""
    node = Node(make_config(node={"ae_title": "VPET", "port": free_port(),
                                     "idle_timeout_s": 0.5})).start()
    try:
        ds, dataset = _one_slice(tmp_path)
        with _open_store(node, ds) as sock:
            sock.sendall(_pdata(1, 0x00, dataset[:200]))
            sock.settimeout(10)
            started = time.monotonic()
            kind, _ = _read_pdu(sock)
            assert kind in (P.ABORT, -1)
            assert 0.4 < time.monotonic() - started < 8
        assert wait_for(lambda: not _files_being_received(node), timeout=10)
        _still_serves(node)
    finally:
        node.stop()


def test_leftover_partial_files_removed_at_start(make_config):
    config = make_config()
    partial = config.incoming_dir / ".partial"
    partial.mkdir(parents=True)
    (partial / ".incoming-x.tmp").write_bytes(b"half an instance")
    node = Node(config).start()
    try:
        assert not list(partial.iterdir())
    finally:
        node.stop()


@pytest.mark.parametrize("bad", [b"\x01\x00\x00\x00\x00\x02\xff", bytes(10)])
def test_truncated_associate_request_aborts(node, bad):
    with _raw(node) as sock:
        sock.sendall(struct.pack(">BxL", 0x01, len(bad)) + bad)
        assert _read_pdu(sock)[0] in (P.ABORT, -1)
    _still_serves(node)


def test_association_limit_rejects_transiently_then_recovers(make_config):
    node = Node(make_config(node={"ae_title": "VPET", "port": free_port(),
                                  "max_associations": 1})).start()
    try:
        with _raw(node) as first:
            first.sendall(associate_rq())
            assert _read_pdu(first)[0] == P.ASSOCIATE_AC
            with _raw(node) as second:
                second.sendall(associate_rq())
                kind, body = _read_pdu(second)
            assert kind == P.ASSOCIATE_RJ and tuple(body[1:4]) == (2, 3, 2)
            first.sendall(struct.pack(">BxL", P.RELEASE_RQ, 4) + bytes(4))
            assert _read_pdu(first)[0] == P.RELEASE_RP
        wait_for(lambda: node.scp._server.active_count() == 0, timeout=5)
        _still_serves(node)
        from dicom_node.db import Event
        with node.db.session() as s:
            assert [e.kind for e in s.scalars(select(Event))] == ["busy"]
    finally:
        node.stop()


def test_responses_respect_the_requestors_maximum_pdu(node):
    """A requestor that takes only 64-byte P-DATA fields gets its C-ECHO response in fragments."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset

    echo = pydicom.Dataset()
    echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
    echo.CommandField, echo.MessageID, echo.CommandDataSetType = 0x0030, 5, 0x0101
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    from pydicom.filewriter import write_dataset
    write_dataset(buf, echo)
    command = struct.pack("<HHLL", 0, 0, 4, len(buf.getvalue())) + buf.getvalue()
    with _raw(node) as sock:
        sock.sendall(associate_rq(contexts=((1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),),
                                  max_pdu=64))
        assert _read_pdu(sock)[0] == P.ASSOCIATE_AC
        sock.sendall(_pdata(1, 0x03, command))
        fragments, data = 0, b""
        while True:
            kind, body = _read_pdu(sock)
            assert kind == P.P_DATA_TF and len(body) <= 64  # the variable field (PS3.8 D.1)
            fragments += 1
            data += body[6:]
            if body[5] & 0x02:
                break
    assert fragments > 1
    response = read_dataset(DicomBytesIO(data), True, True)
    assert response.CommandField == 0x8030 and response.Status == 0
    assert response.MessageIDBeingRespondedTo == 5


def test_sender_without_nodelay_is_not_stalled_by_delayed_acks(node, tmp_path):
    """pynetdicom (like DCMTK without TCP_NODELAY=1) sends with Nagle on: without quick ACKs
    each instance waited ~40 ms for the receiver's delayed ACK (80 instances: >= 3.2 s).
    Stall-free they take ~0.4 s here; the 2 s bound leaves room for a slow CI machine."""
    import time

    files = make_tiny_ct(tmp_path / "ct", shape=(80, 8, 8))
    started = time.monotonic()
    results = scu.send_files(files, "VPET", "127.0.0.1", node.port, calling_ae="SCANNER")
    took = time.monotonic() - started
    assert all(r.ok for r in results)
    assert took < 2.0, f"80 instances took {took:.2f} s: delayed-ACK stall is back"
