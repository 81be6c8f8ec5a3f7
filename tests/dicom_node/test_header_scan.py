"""The receive path's fast header scan agrees with pydicom or declines; the hand-encoded
Part 10 header is byte-identical to pydicom's."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicom_node.header_scan import scan_header
from dicom_node.intake import _part10_header
from dicom_node.ul.pdu import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION


def _dataset(description: str = "ABDOMEN CT") -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.Modality = "CT"
    # sequences before the attributes we want, one nested, to be skipped
    inner = Dataset()
    inner.CodeValue = "X"
    item = Dataset()
    item.CodeValue = "T-1"
    item.CodingSchemeDesignator = "SRT"
    item.ConceptNameCodeSequence = Sequence([inner])
    ds.ProcedureCodeSequence = Sequence([item, Dataset()])
    ds.SeriesDescription = description
    ds.BodyPartExamined = "ABDOMEN"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.InstanceNumber = 1
    ds.BitsAllocated = 8
    ds.PixelData = b"\x00" * 32
    return ds


def _encode(ds: Dataset, implicit: bool, little: bool = True,
            undefined_lengths: bool = False) -> bytes:
    buf = DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = implicit, little
    if undefined_lengths:
        ds.ProcedureCodeSequence.is_undefined_length = True
        for item in ds.ProcedureCodeSequence:
            item.is_undefined_length_sequence_item = True
    write_dataset(buf, ds)
    return buf.getvalue()


EXPECTED = {
    "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "SOPInstanceUID": "1.2.3.4.5.6",
    "Modality": "CT", "SeriesDescription": "ABDOMEN CT", "BodyPartExamined": "ABDOMEN",
    "StudyInstanceUID": "1.2.3", "SeriesInstanceUID": "1.2.3.4",
}


@pytest.mark.parametrize("syntax,implicit", [(ImplicitVRLittleEndian, True),
                                             (ExplicitVRLittleEndian, False),
                                             ("1.2.840.10008.1.2.4.80", False)])  # JPEG-LS
@pytest.mark.parametrize("undefined", [False, True])
def test_scan_matches_pydicom(syntax, implicit, undefined):
    data = _encode(_dataset(), implicit, undefined_lengths=undefined)
    assert scan_header(data, syntax) == EXPECTED


def test_scan_declines_what_it_cannot_judge():
    ds = _dataset()
    assert scan_header(_encode(ds, False, little=False), ExplicitVRBigEndian) is None
    assert scan_header(_encode(ds, False), "1.2.840.10008.1.2.1.99") is None  # deflate
    assert scan_header(_encode(_dataset("Abdomen \xe9tude"), False),  # latin-1 text
                       ExplicitVRLittleEndian) is None
    data = _encode(ds, False)
    assert scan_header(data[:100], ExplicitVRLittleEndian) is None  # truncated
    assert scan_header(b"not dicom at all, not dicom at all", ExplicitVRLittleEndian) is None


def test_part10_header_is_what_pydicom_writes():
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"  # odd length: padded
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    meta.SourceApplicationEntityTitle = "SCANNER"
    buf = DicomBytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)
    ours = _part10_header("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5", ExplicitVRLittleEndian,
                          "SCANNER")
    assert ours == buf.getvalue()
    read = pydicom.dcmread(DicomBytesIO(ours + _encode(_dataset(), False)))
    assert read.SeriesInstanceUID == "1.2.3.4"
