"""DICOM TLS (PS3.15 B.1/B.2): SSL contexts for our SCP and for destinations.

Why: results and images cross hospital networks; our acceptor (dicom_node/ul) and pynetdicom
(sending: `associate(tls_args=(context, server_hostname))`) take a ready `ssl.SSLContext`, so
all policy (TLS >= 1.2, client certificates, hostname checks) lives here, built from the config.
"""

from __future__ import annotations

import logging
import ssl

from dicom_node.config import Destination, TlsSettings

logger = logging.getLogger(__name__)


class _DeferredHandshakeContext(ssl.SSLContext):
    """Handshake in the association thread, not in the accept loop.

    With the default `do_handshake_on_connect=True` a wrap in the accept loop would let one
    silent TCP client block every later association. Deferred, the association thread runs
    the handshake (under its associate timeout), and a plain-DICOM peer fails there alone.
    """

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,  # type: ignore[override]
                    suppress_ragged_eofs=True, server_hostname=None, session=None):
        return super().wrap_socket(sock, server_side=server_side, do_handshake_on_connect=False,
                                   suppress_ragged_eofs=suppress_ragged_eofs,
                                   server_hostname=server_hostname, session=session)


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """Context for the SCP: our certificate; client certificates checked against `tls.ca`."""
    ctx = _DeferredHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    if tls.ca is not None:
        ctx.load_verify_locations(cafile=str(tls.ca))
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_tls_args(dest: Destination) -> tuple[ssl.SSLContext, str | None] | None:
    """pynetdicom `tls_args` for a destination, or None for plain TCP."""
    tls = dest.tls
    if tls is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.ca is not None:
        ctx.load_verify_locations(cafile=str(tls.ca))
    else:
        ctx.load_default_certs()
    ctx.check_hostname = tls.check_hostname
    if tls.cert is not None:
        ctx.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None)
    return ctx, dest.host
