"""Live reload: a changed rules file routes the next series by the new rule, an association
open across the reload completes, SIGHUP reloads at once, an invalid file keeps the old one."""

from __future__ import annotations

import logging
import os
import signal

import pydicom
import yaml
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from sqlalchemy import select

from dicom_node import scu
from dicom_node.config import load_config
from dicom_node.db import Job
from dicom_node.node import Node
from dicom_node.reload import watch_config
from tests.conftest import free_port, make_tiny_ct
from tests.dicom_node.helpers import wait_for

CT = "1.2.840.10008.5.1.4.1.1.2"


def _write(path, rule_name: str, description: str = ".*", dests=None) -> None:
    data = {
        "node": {"ae_title": "VPET", "port": NODE_PORT},
        "storage": {"path": "data"}, "series": {"timeout_s": 0.3},
        "workers": {"count": 0},
        "destinations": dests or {"pacs": {"ae_title": "DEST", "host": "127.0.0.1",
                                           "port": 4242}},
        "rules": [{"name": rule_name, "match": {"modality": "CT",
                                                "series_description": description},
                   "recipe": "ct-to-pet", "destinations": ["pacs"]}],
    }
    text = yaml.safe_dump(data)
    path.write_text(text)
    st = os.stat(path)  # make sure the mtime moves even on coarse clocks
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


NODE_PORT = free_port()


def _job_rules(node: Node) -> list[str]:
    with node.db.session() as s:
        return [j.rule for j in s.scalars(select(Job).order_by(Job.id))]


def test_reload_on_change_keeps_open_association(tmp_path, caplog):
    cfg_file = tmp_path / "vpet.yaml"
    _write(cfg_file, "old-rule")
    node = Node(load_config(cfg_file), tracker_interval_s=0.1).start()
    watcher = watch_config(cfg_file, node, interval_s=0.1, sighup=False)
    try:
        files = make_tiny_ct(tmp_path / "ct", shape=(2, 8, 8))
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(CT, [ExplicitVRLittleEndian])
        assoc = ae.associate("127.0.0.1", node.port, ae_title="VPET")
        assert assoc.send_c_store(pydicom.dcmread(files[0])).Status == 0
        _write(cfg_file, "new-rule", dests={"pacs": {"ae_title": "NEWDEST",
                                                     "host": "127.0.0.1", "port": 4343}})
        wait_for(lambda: watcher.reloads == 1, timeout=5)
        assert node.config.destinations["pacs"].ae_title == "NEWDEST"
        assert assoc.is_established  # the open association survived the reload
        assert assoc.send_c_store(pydicom.dcmread(files[1])).Status == 0
        assoc.release()
        wait_for(lambda: _job_rules(node) == ["new-rule"], timeout=5)
        # an invalid file is logged; the running config stays
        with caplog.at_level(logging.ERROR, logger="dicom_node.reload"):
            cfg_file.write_text("rules: [{name: x, recipe: nope}]\n")
            os.utime(cfg_file, ns=(0, os.stat(cfg_file).st_mtime_ns + 2_000_000_000))
            wait_for(lambda: watcher.failures == 1, timeout=5)
        assert any("keeping the running config" in r.message for r in caplog.records)
        assert [r.name for r in node.config.rules] == ["new-rule"]
        assert scu.echo("VPET", "127.0.0.1", node.port) == 0
    finally:
        watcher.stop()
        node.stop()


def test_sighup_reloads(tmp_path):
    cfg_file = tmp_path / "vpet.yaml"
    _write(cfg_file, "before")
    node = Node(load_config(cfg_file), tracker_interval_s=0.1).start()
    previous = signal.getsignal(signal.SIGHUP)
    watcher = watch_config(cfg_file, node, interval_s=30)  # polling too slow to matter
    try:
        data = yaml.safe_load(cfg_file.read_text())
        data["rules"][0]["name"] = "after-hup"
        cfg_file.write_text(yaml.safe_dump(data))
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: watcher.reloads == 1, timeout=5)
        files = make_tiny_ct(tmp_path / "ct", shape=(1, 8, 8))
        assert all(r.ok for r in scu.send_files(files, "VPET", "127.0.0.1", node.port))
        wait_for(lambda: _job_rules(node) == ["after-hup"], timeout=5)
    finally:
        signal.signal(signal.SIGHUP, previous)
        watcher.stop()
        node.stop()


def test_standalone_worker_reloads_destinations(tmp_path):
    """`vpet worker` on another machine: a destination moved in the file is used by the next
    job without a restart (the same watcher as `serve`, applied to the worker's config)."""
    import threading

    from dicom_node.worker import Worker
    from tests.dicom_node.helpers import fake_runner, stand_in_pacs

    cfg_file = tmp_path / "vpet.yaml"
    old_port, new_port = free_port(), free_port()
    _write(cfg_file, "ct", dests={"pacs": {"ae_title": "DEST", "host": "127.0.0.1",
                                           "port": old_port}})
    node = Node(load_config(cfg_file), tracker_interval_s=0.1).start()
    stop = threading.Event()
    worker = Worker(load_config(cfg_file), runner=fake_runner, stop=stop)
    watcher = watch_config(cfg_file, worker, interval_s=0.1, sighup=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    pacs = stand_in_pacs(new_port).start()
    try:
        _write(cfg_file, "ct", dests={"pacs": {"ae_title": "DEST", "host": "127.0.0.1",
                                               "port": new_port}})
        wait_for(lambda: worker.config.destinations["pacs"].port == new_port, timeout=5)
        thread.start()
        files = make_tiny_ct(tmp_path / "ct", shape=(2, 8, 8))
        assert all(r.ok for r in scu.send_files(files, "VPET", "127.0.0.1", node.port))
        wait_for(lambda: len(pacs.instances) == 2, timeout=30)  # SC + SEG of the fake runner
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(10)
        watcher.stop()
        pacs.stop()
        node.stop()
