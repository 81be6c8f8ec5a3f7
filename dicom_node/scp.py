"""The node's receiving side: a Storage SCP (C-ECHO, C-STORE) built from the config.

Why: one object the node starts and stops; the protocol lives in dicom_node/ul (our own
Upper Layer acceptor, not pynetdicom's, for speed — see its docstring), the policy in
dicom_node/intake.py. Every storage SOP class pynetdicom knows is accepted, with every
transfer syntax it knows: bytes are stored as received, and pydicom with the pylibjpeg and
pyjpegls plugins decodes them when the pipeline loads the series.

Receive-path costs (`vpet bench receive`, 512x512x300 CT): per instance one file write, one
shared flush of the file and its folder (storage.publish_durably) and one SQLite commit
(records.record_instance, four Core statements); pynetdicom's threads, queues and 1 ms polling
are gone from this path.
"""

from __future__ import annotations

import logging

from pynetdicom import ALL_TRANSFER_SYNTAXES
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification

from dicom_node.config import Config
from dicom_node.db import Database
from dicom_node.intake import Intake
from dicom_node.tls import server_context
from dicom_node.ul.association import AcceptorSettings
from dicom_node.ul.server import AcceptorServer

logger = logging.getLogger(__name__)

UNCOMPRESSED = [
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still seen)
]
# JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000 (+HT), RLE, deflate, video
ACCEPTED_SYNTAXES = frozenset(UNCOMPRESSED) | frozenset(ALL_TRANSFER_SYNTAXES)
ACCEPTED_CLASSES = frozenset([str(Verification)] + [
    str(cx.abstract_syntax) for cx in AllStoragePresentationContexts])


class StorageSCP:
    """C-ECHO/C-STORE acceptor bound to the config; `start()` returns once listening."""

    def __init__(self, config: Config, db: Database) -> None:
        self.config = config
        self.db = db
        self.intake = Intake(config, db)
        self._server: AcceptorServer | None = None

    @property
    def disk_guard(self):
        return self.intake.disk_guard

    def start(self) -> None:
        node = self.config.node
        self.intake.prepare()
        settings = AcceptorSettings(
            max_pdu=node.max_pdu, abstract_syntaxes=ACCEPTED_CLASSES,
            transfer_syntaxes=ACCEPTED_SYNTAXES,
            associate_timeout_s=node.associate_timeout_s, idle_timeout_s=node.idle_timeout_s,
            max_associations=node.max_associations,
            ssl_context=server_context(node.tls) if node.tls is not None else None)
        self._server = AcceptorServer(node.host, node.port, self.intake, settings)
        self._server.start()
        logger.info("SCP %s listening on %s:%d%s", node.ae_title, node.host, self.port,
                    " (TLS)" if node.tls is not None else "")

    @property
    def port(self) -> int:
        """The bound port (useful when the config asked for port 0)."""
        if self._server is None:
            return self.config.node.port
        return self._server.port

    def add_listener(self, listener) -> None:
        """Call `listener(outcome)` for each association: accepted, rejected, released,
        aborted (the metrics count them)."""
        if self._server is not None:
            self._server.listeners.append(listener)

    def open_associations(self) -> int:
        return self._server.active_count() if self._server is not None else 0

    def is_allowed(self, calling_ae: str, address: str) -> bool:
        return self.intake.is_allowed(calling_ae, address)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            logger.info("SCP stopped")
