"""Intake over real associations: compressed syntaxes decode to the same HU, character sets and
private tags survive byte for byte, enhanced multi-frame objects are kept."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pynetdicom._config
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE
from sqlalchemy import select

from dicom_node.db import Instance, Series
from pipeline.series import load_series
from tests.conftest import make_tiny_ct, require_tool
from tests.dicom_node.helpers import wait_for

DCMCJPEG = "/usr/bin/dcmcjpeg"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def _send(port: int, paths: list[Path]) -> list[int]:
    """C-STORE files proposing each file's own transfer syntax (as a modality would)."""
    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title="SCANNER")
    for ts in {str(d.file_meta.TransferSyntaxUID) for d in datasets}:
        for sop in {str(d.SOPClassUID) for d in datasets}:
            ae.add_requested_context(sop, [ts])
    assoc = ae.associate("127.0.0.1", port, ae_title="VPET")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(d).Status) for d in datasets]
    finally:
        assoc.release()


def _stored(node) -> dict[str, str]:
    with node.db.session() as s:
        return {i.sop_instance_uid: i.path for i in s.scalars(select(Instance))}


def _compress_pydicom(src: Path, dst: Path, syntax: str) -> None:
    ds = pydicom.dcmread(src)
    if syntax == DeflatedExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = syntax
    else:
        ds.compress(syntax)
    ds.save_as(dst, enforce_file_format=True)


def _compress_dcmtk(src: Path, dst: Path, flag: str) -> None:
    require_tool(DCMCJPEG)
    subprocess.run([DCMCJPEG, flag, str(src), str(dst)], check=True, timeout=30)


CASES = [
    ("rle", lambda s, d: _compress_pydicom(s, d, RLELossless), 0.0),
    ("jpeg-ls", lambda s, d: _compress_pydicom(s, d, JPEGLSLossless), 0.0),
    ("j2k", lambda s, d: _compress_pydicom(s, d, JPEG2000Lossless), 0.0),
    ("deflate", lambda s, d: _compress_pydicom(s, d, DeflatedExplicitVRLittleEndian), 0.0),
    ("jpeg-lossless", lambda s, d: _compress_dcmtk(s, d, "+e1"), 0.0),
    ("jpeg-extended", lambda s, d: _compress_dcmtk(s, d, "+ee"), 20.0),  # lossy: mean |dHU|
    ("jpeg-baseline", lambda s, d: _compress_dcmtk(s, d, "+eb"), 20.0),  # 8-bit, rescaled
]


@pytest.mark.parametrize(("name", "compress", "tolerance"), CASES, ids=[c[0] for c in CASES])
def test_compressed_series_stored_and_decoded(node, tmp_path, name, compress, tolerance):
    originals = make_tiny_ct(tmp_path / "ct", shape=(3, 32, 32))  # J2K needs >= 32 px
    sent = []
    for i, src in enumerate(originals):
        dst = tmp_path / f"{name}-{i}.dcm"
        compress(src, dst)
        sent.append(dst)
    syntax = str(pydicom.dcmread(sent[0]).file_meta.TransferSyntaxUID)
    assert _send(node.port, sent) == [0, 0, 0]
    stored = _stored(node)
    assert len(stored) == 3
    for path in stored.values():  # kept as received: same transfer syntax, no re-encoding
        assert str(pydicom.dcmread(path).file_meta.TransferSyntaxUID) == syntax
    expected = load_series(originals).array()
    got = load_series([Path(p) for p in stored.values()]).array()
    assert got.shape == expected.shape
    diff = np.abs(got - expected)
    if tolerance == 0:
        assert diff.max() == 0, f"{name}: lossless decode changed HU (max {diff.max()})"
    else:
        assert diff.mean() < tolerance, f"{name}: mean |dHU| {diff.mean():.1f}"


def _charset_file(tmp_path: Path, charset: str, name: str, description: str) -> Path:
    src = make_tiny_ct(tmp_path / charset.replace(" ", "_"), shape=(1, 8, 8))[0]
    ds = pydicom.dcmread(src)
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.SeriesDescription = description
    block = ds.private_block(0x0029, "VPET TEST", create=True)
    block.add_new(0x01, "LO", "private value")
    block.add_new(0x02, "OB", bytes(range(7)))  # odd length: padded by the writer, kept as is
    ds.add_new(0x00311010, "LO", "unknown creatorless")  # private tag without creator
    out = tmp_path / f"{charset.replace(' ', '_')}.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


def _dataset_bytes(path: Path) -> bytes:
    """The dataset part of a file (after preamble and file meta)."""
    ds = pydicom.dcmread(path, stop_before_pixels=False)
    raw = path.read_bytes()
    meta_len = 132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
    return raw[meta_len:]


@pytest.mark.parametrize(("charset", "name", "description"), [
    ("ISO_IR 192", "Müller^Jörg=山田^太郎", "Abdomen – Leber 3 mm"),
    ("ISO_IR 100", "Müller^Jürgen", "Thorax Übersicht"),
])
def test_charset_and_private_tags_survive_byte_identical(node, tmp_path, monkeypatch, charset,
                                                         name, description):
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)  # send file bytes
    src = _charset_file(tmp_path, charset, name, description)
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(str(pydicom.dcmread(src).SOPClassUID), [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", node.port, ae_title="VPET")
    assert assoc.send_c_store(src).Status == 0
    assoc.release()
    (path,) = _stored(node).values()
    assert _dataset_bytes(Path(path)) == _dataset_bytes(src)
    back = pydicom.dcmread(path)
    assert str(back.PatientName) == name and back.SeriesDescription == description
    assert back[0x0029, 0x1001].value == "private value"
    with node.db.session() as s:
        assert s.scalar(select(Series)).description == description


def _enhanced_ct(path: Path, frames: int = 4) -> Path:
    """A minimal Enhanced CT Image object (multi-frame) for storage purposes."""
    src = pydicom.dcmread(make_tiny_ct(path.parent / "src", shape=(1, 8, 8))[0])
    ds = pydicom.Dataset()
    for kw in ("PatientName", "PatientID", "StudyInstanceUID", "Modality", "Rows", "Columns",
               "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
               "SamplesPerPixel", "PhotometricInterpretation", "FrameOfReferenceUID"):
        setattr(ds, kw, getattr(src, kw))
    ds.SOPClassUID = ENHANCED_CT
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = frames
    fg = pydicom.Dataset()
    pm = pydicom.Dataset()
    pm.SliceThickness = "2.5"
    pm.PixelSpacing = [1, 1]
    fg.PixelMeasuresSequence = [pm]
    ds.SharedFunctionalGroupsSequence = [fg]
    ds.PixelData = np.zeros((frames, 8, 8), np.int16).tobytes()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_enhanced_multiframe_kept_and_completed_by_frame_count(make_config, tmp_path):
    from dicom_node.node import Node

    cfg = make_config(series={"timeout_s": 30, "max_wait_s": 60})  # idle timer never fires
    with Node(cfg, tracker_interval_s=0.1) as n:
        src = _enhanced_ct(tmp_path / "enh.dcm", frames=4)
        assert _send(n.port, [src]) == [0]
        (path,) = _stored(n).values()
        assert Path(path).read_bytes().endswith(pydicom.dcmread(src).PixelData)
        assert pydicom.dcmread(path).NumberOfFrames == 4
        # NumberOfFrames reached after release: complete without waiting 30 s
        wait_for(lambda: _series_state(n) == "queued", timeout=5)


def _series_state(node) -> str:
    with node.db.session() as s:
        return s.scalar(select(Series.state))


def test_dcmtk_storescu_sends_compressed(node, tmp_path):
    require_tool("/usr/bin/storescu")
    require_tool(DCMCJPEG)
    src = make_tiny_ct(tmp_path / "ct", shape=(2, 16, 16))
    out = tmp_path / "jpeg"
    out.mkdir()
    for f in src:
        subprocess.run([DCMCJPEG, "+e1", str(f), str(out / f.name)], check=True, timeout=30)
    proc = subprocess.run(["/usr/bin/storescu", "-xs", "-aet", "SCANNER", "-aec", "VPET", "127.0.0.1",
                           str(node.port), *map(str, sorted(out.iterdir()))],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"TCP_NODELAY": "1", "PATH": "/usr/bin"})
    assert proc.returncode == 0, proc.stderr
    stored = _stored(node)
    assert len(stored) == 2  # -xs proposes JPEG lossless: the file travels compressed
    assert {pydicom.dcmread(p).file_meta.TransferSyntaxUID for p in stored.values()} == {
        "1.2.840.10008.1.2.4.70"}
