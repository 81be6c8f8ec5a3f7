"""After an unclean stop, files whose database row was lost are indexed again at start; a
clean stop leaves nothing to do."""

from __future__ import annotations

from sqlalchemy import delete, select

from dicom_node import scu
from dicom_node.db import Instance, Series
from dicom_node.node import Node
from dicom_node.reconcile import MARKER
from tests.conftest import make_tiny_ct
from tests.dicom_node.helpers import wait_for


def _instances(node: Node) -> dict[str, str]:
    with node.db.session() as s:
        return {i.sop_instance_uid: i.series_uid for i in s.scalars(select(Instance))}


def _series_state(node: Node) -> str:
    with node.db.session() as s:
        return s.scalars(select(Series)).one().state


def test_lost_rows_reindexed_after_unclean_stop(make_config, tmp_path):
    config = make_config()
    files = make_tiny_ct(tmp_path / "ct", shape=(3, 8, 8))
    node = Node(config, tracker_interval_s=0.1).start()
    marker = config.storage.path / MARKER
    try:
        assert marker.exists()
        assert all(r.ok for r in scu.send_files(files, "VPET", "127.0.0.1", node.port,
                                                calling_ae="SCANNER"))
        before = _instances(node)
        assert len(before) == 3
        lost = max(before)
        with node.db.session() as s:  # what a power loss does to the last commit
            s.execute(delete(Instance).where(Instance.sop_instance_uid == lost))
    finally:
        node.stop()
    assert not marker.exists()  # clean stop
    marker.write_text("4242\n")  # ... but pretend the machine lost power instead
    node = Node(config, tracker_interval_s=0.1).start()
    try:
        assert _instances(node) == before
        with node.db.session() as s:
            inst = s.scalars(select(Instance).where(Instance.sop_instance_uid == lost)).one()
            assert inst.calling_ae == "SCANNER"
        wait_for(lambda: _series_state(node) != "receiving", timeout=10)  # completes as usual
    finally:
        node.stop()


def test_clean_restart_scans_nothing(make_config, tmp_path, caplog):
    config = make_config()
    files = make_tiny_ct(tmp_path / "ct", shape=(1, 8, 8))
    with Node(config) as node:
        assert all(r.ok for r in scu.send_files(files, "VPET", "127.0.0.1", node.port))
        with node.db.session() as s:
            s.execute(delete(Instance))
    with Node(config) as node:  # clean stop before: the row stays gone (no scan)
        assert _instances(node) == {}
