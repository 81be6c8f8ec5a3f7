"""Durable storage: UID validation against path traversal, no temp files left behind."""

from __future__ import annotations

import os

import pytest

from dicom_node.storage import instance_path, is_valid_uid, store_instance, write_durably
from pipeline.errors import InputError


@pytest.mark.parametrize("uid", ["../etc", "1.2/../../x", "1..2", ".1.2", "1.2.", "", "1.2 3",
                                 "/abs", "1.2\\3", "1" * 65, "1.2.a"])
def test_rejects_bad_uids(tmp_path, uid):
    assert not is_valid_uid(uid)
    with pytest.raises(InputError):
        instance_path(tmp_path, "1.2", uid, "1.2.3")
    with pytest.raises(InputError):
        store_instance(tmp_path, uid, "1.2", "1.2.3", b"x")
    assert list(tmp_path.iterdir()) == []


def test_store_writes_exact_bytes_without_temp_files(tmp_path):
    path = store_instance(tmp_path, "1.2", "1.2.3", "1.2.3.4", b"DICM-bytes")
    assert path == tmp_path / "1.2" / "1.2.3" / "1.2.3.4.dcm"
    assert path.read_bytes() == b"DICM-bytes"
    store_instance(tmp_path, "1.2", "1.2.3", "1.2.3.4", b"again")  # overwrite is atomic
    assert path.read_bytes() == b"again"
    assert sorted(p.name for p in path.parent.iterdir()) == ["1.2.3.4.dcm"]


def test_failed_write_removes_temp_file(tmp_path, monkeypatch):
    def boom(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        write_durably(tmp_path / "a" / "x.dcm", b"data")
    assert list((tmp_path / "a").iterdir()) == []
