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


def test_new_file_syncs_file_and_folder(tmp_path, monkeypatch):
    """A new name is published by hard link; both the file and its folder are fsynced."""
    import stat

    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    path = write_durably(tmp_path / "s" / "1.2.dcm", [b"head", b"-", b"pixels"])
    assert path.read_bytes() == b"head-pixels"
    assert sorted(synced) == ["dir", "file"]
    assert [p.name for p in path.parent.iterdir()] == ["1.2.dcm"]


def test_failed_sync_of_new_file_leaves_no_name(tmp_path, monkeypatch):
    """If the flush fails, the unacknowledged file must not stay under its final name."""
    real_fsync = os.fsync

    def dir_fails(fd):
        import stat
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(5, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", dir_fails)
    with pytest.raises(OSError):
        write_durably(tmp_path / "a" / "x.dcm", b"data")
    assert list((tmp_path / "a").iterdir()) == []


def test_filesystem_without_links_falls_back_to_rename(tmp_path, monkeypatch):
    def no_links(_src, _dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = write_durably(tmp_path / "a" / "x.dcm", b"data")
    assert path.read_bytes() == b"data"
    assert [p.name for p in path.parent.iterdir()] == ["x.dcm"]


@pytest.mark.parametrize("anonymous", [True, False], ids=["unnamed-temp", "named-temp"])
def test_open_temp_publish_and_replace(tmp_path, monkeypatch, anonymous):
    """A received instance's temp file (unnamed O_TMPFILE, or a named one where the
    filesystem has none) gets its final name; a re-sent copy replaces it; no temp is left."""
    from dicom_node import storage

    monkeypatch.setattr(storage, "_ANONYMOUS", anonymous and storage._ANONYMOUS)
    partial = tmp_path / ".partial"
    partial.mkdir()
    target = tmp_path / "study" / "series" / "1.2.3.dcm"
    for content in (b"first copy", b"second copy"):
        fd, name = storage.open_temp(partial)
        try:
            assert (name is None) == (anonymous and storage._ANONYMOUS)
            os.write(fd, content)
            storage.publish_durably(fd, name, target)
        finally:
            os.close(fd)
        assert target.read_bytes() == content
    assert os.stat(target).st_mode & 0o777 == 0o600  # PHI: owner only
    assert not list(partial.iterdir())
    assert sorted(p.name for p in target.parent.iterdir()) == ["1.2.3.dcm"]
