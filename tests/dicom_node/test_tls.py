"""DICOM TLS on 127.0.0.1 with certificates made by the test: SCP, client certs, destinations.

Also: a plain (non-TLS) association or a silent TCP client on the TLS port fails cleanly and
the node keeps serving TLS peers.
"""

from __future__ import annotations

import socket
import ssl

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
from sqlalchemy import select

from dicom_node import scu
from dicom_node.config import Destination, DestinationTls, TlsSettings
from dicom_node.db import Database, Delivery, Instance
from dicom_node.jobs import create_job
from dicom_node.node import Node
from dicom_node.sender import deliver
from dicom_node.tls import client_tls_args, server_context
from pipeline.errors import DeliveryError
from tests.conftest import make_tiny_ct
from tests.dicom_node.certs import CertAuthority
from tests.dicom_node.helpers import UNCOMPRESSED, wait_for
from tests.dicom_node.test_sender import _outputs


@pytest.fixture
def pki(tmp_path):
    ca = CertAuthority(tmp_path / "pki")
    return {"ca": ca, "server": ca.issue("server", server=True),
            "client": ca.issue("client", server=False),
            "rogue": CertAuthority(tmp_path / "rogue", "rogue-ca").issue("rogue", server=False)}


def _tls_node(make_config, pki, require_client_cert: bool) -> Node:
    tls = {"cert": str(pki["server"].cert), "key": str(pki["server"].key),
           "ca": str(pki["ca"].pem), "require_client_cert": require_client_cert}
    cfg = make_config(node={"ae_title": "VPET", "port": 0, "tls": tls})
    return Node(cfg, tracker_interval_s=0.1).start()


def _args(pki, client: str | None, port: int):
    dest = Destination(ae_title="VPET", host="127.0.0.1", port=port, tls=DestinationTls(
        ca=pki["ca"].pem, cert=pki[client].cert if client else None,
        key=pki[client].key if client else None))
    return client_tls_args(dest)


def test_tls_store_with_client_certificate(make_config, pki, tmp_path):
    node = _tls_node(make_config, pki, require_client_cert=True)
    try:
        files = make_tiny_ct(tmp_path / "ct", shape=(3, 16, 16))
        results = scu.send_files(files, "VPET", "127.0.0.1", node.port, calling_ae="SCANNER",
                                 tls_args=_args(pki, "client", node.port))
        assert all(r.ok for r in results)
        with node.db.session() as s:
            assert len(list(s.scalars(select(Instance)))) == 3
        for who in (None, "rogue"):  # no certificate, or one from another CA: refused
            with pytest.raises(DeliveryError):
                scu.echo("VPET", "127.0.0.1", node.port, tls_args=_args(pki, who, node.port),
                         timeout=5)
        assert scu.echo("VPET", "127.0.0.1", node.port,
                        tls_args=_args(pki, "client", node.port)) == 0
    finally:
        node.stop()


def test_plain_and_silent_peers_fail_cleanly(make_config, pki):
    node = _tls_node(make_config, pki, require_client_cert=False)
    try:
        silent = socket.create_connection(("127.0.0.1", node.port))  # never says anything
        with pytest.raises(DeliveryError):  # plain DICOM to the TLS port
            scu.echo("VPET", "127.0.0.1", node.port, timeout=5)
        # the node still serves TLS peers (server certificate only) while `silent` hangs on
        assert scu.echo("VPET", "127.0.0.1", node.port,
                        tls_args=_args(pki, None, node.port), timeout=5) == 0
        silent.close()
        assert scu.echo("VPET", "127.0.0.1", node.port,
                        tls_args=_args(pki, "client", node.port), timeout=5) == 0
    finally:
        node.stop()


def test_deliver_to_tls_destination(make_config, pki, tmp_path, dest_port):
    received: list[str] = []
    ae = AE(ae_title="DEST")
    for uid in ("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.66.4"):
        ae.add_supported_context(uid, UNCOMPRESSED)
    ae.add_supported_context(Verification)
    ctx = server_context(TlsSettings(cert=pki["server"].cert, key=pki["server"].key,
                                     ca=pki["ca"].pem, require_client_cert=True))

    def on_store(event: evt.Event) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0

    server = ae.start_server(("127.0.0.1", dest_port), block=False, ssl_context=ctx,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        good = {"ae_title": "DEST", "host": "127.0.0.1", "port": dest_port,
                "tls": {"ca": str(pki["ca"].pem), "cert": str(pki["client"].cert),
                        "key": str(pki["client"].key)}}
        wrong_ca = dict(good, tls={"ca": str(pki["rogue"].cert)})
        cfg = make_config(destinations={"pacs": good, "wrong": wrong_ca},
                          sender={"retries": 0, "backoff_s": 0, "timeout_s": 5})
        db = Database(cfg.database_url)
        db.upgrade()
        job_id = create_job(db, series_uid="1.2", series_version=1, rule="ct",
                            recipe="ct-to-pet", destinations=["pacs", "wrong"])
        outputs = _outputs(tmp_path)
        errors = deliver(cfg, db, job_id, ["wrong", "pacs"], outputs)
        assert len(errors) == 1 and errors[0].startswith("destination wrong (DEST@")
        assert "TLS" in errors[0]
        wait_for(lambda: len(received) == 2, timeout=5)
        assert sorted(received) == sorted(o["sop_instance_uid"] for o in outputs)
        with db.session() as s:
            assert {(r.destination, r.status) for r in s.scalars(select(Delivery))} == {
                ("pacs", "sent"), ("wrong", "dead")}
    finally:
        server.shutdown()


def test_server_context_needs_ca_for_client_certs(pki):
    ctx = server_context(TlsSettings(cert=pki["server"].cert, key=pki["server"].key))
    assert ctx.verify_mode == ssl.CERT_NONE and ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError, match="require_client_cert needs `ca`"):
        TlsSettings(cert=pki["server"].cert, key=pki["server"].key, require_client_cert=True)
