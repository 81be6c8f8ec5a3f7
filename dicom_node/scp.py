"""The node's receiving side: a pynetdicom AE answering C-ECHO and C-STORE.

Why: Success is returned only after the instance is on disk and in the database; every
failure becomes a DICOM status plus a log line naming association, SOP Instance UID and reason,
and the server keeps serving. Work here stays light: parse the header, write bytes, one commit.

Receive-path costs (`vpet bench receive`, 2-core test machine): every flush (fsync) costs ~4 ms
there, so storage.write_durably issues the file and folder fsyncs together (one flush) and
records.record_instance indexes with four Core statements in one transaction (the SQLite
commit is the second flush). pynetdicom's STORE_RECV_CHUNKED_DATASET is deliberately off: it
writes to the system temp folder (often another filesystem than storage, so the file would be
copied, not renamed), flushes on every PDU fragment and is a process-wide switch.
"""

from __future__ import annotations

import errno
import logging
import threading
import uuid
from io import BytesIO

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.association import Association
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node.config import Config
from dicom_node.db import Database, record_event
from dicom_node.records import ReceivedInstance, mark_released, record_instance
from dicom_node.storage import DiskGuard, store_instance, validate_uid
from dicom_node.tls import server_context
from pipeline.errors import InputError, OutOfResources, VpetError

logger = logging.getLogger(__name__)

UNCOMPRESSED = [
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still seen)
]
# Every syntax pynetdicom knows: uncompressed first, then JPEG baseline/extended/lossless,
# JPEG-LS, JPEG 2000 (+HT), RLE, deflate, video. Bytes are stored as received; pydicom with the
# pylibjpeg/pyjpegls plugins decodes them when the pipeline loads the series.
ACCEPTED_SYNTAXES = UNCOMPRESSED + [ts for ts in ALL_TRANSFER_SYNTAXES if ts not in UNCOMPRESSED]

_HEADER_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
    "SeriesDescription", "BodyPartExamined",
]
_REQUIRED = {
    "SOPInstanceUID": "(0008,0018)",
    "StudyInstanceUID": "(0020,000D)",
    "SeriesInstanceUID": "(0020,000E)",
}


def peer_label(assoc: Association) -> str:
    """`CALLING->CALLED@ip:port`: how an association is named in logs and events."""
    rq = assoc.requestor
    calling, called = calling_called(assoc)
    return f"{calling}->{called}@{rq.address}:{rq.port}"


def calling_called(assoc: Association) -> tuple[str, str]:
    """Calling and called AE titles from the A-ASSOCIATE-RQ (set before negotiation ends)."""
    primitive = assoc.requestor.primitive
    if primitive is None:
        return assoc.requestor.ae_title.strip(), "?"
    return str(primitive.calling_ae_title).strip(), str(primitive.called_ae_title).strip()


def parse_header(data: bytes) -> Dataset:
    """Read only the header attributes the node needs; InputError when it is not DICOM."""
    try:
        ds = pydicom.dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        for keyword in _HEADER_TAGS:  # force conversion of the raw elements now
            getattr(ds, keyword, None)
    except Exception as exc:
        raise InputError(f"cannot parse dataset: {type(exc).__name__}: {exc}") from exc
    for keyword, tag in _REQUIRED.items():
        if not str(getattr(ds, keyword, "") or "").strip():
            raise InputError(f"missing {tag} {keyword}")
    return ds


class StorageSCP:
    """C-ECHO/C-STORE acceptor bound to the config; `start()` returns immediately."""

    def __init__(self, config: Config, db: Database) -> None:
        self.config = config
        self.db = db
        self._server: ThreadedAssociationServer | None = None
        self._keys: dict[int, str] = {}
        self._lock = threading.Lock()
        storage = config.storage
        self.disk_guard = DiskGuard(lambda: (config.storage.path, storage.min_free_gb,
                                             storage.max_used_percent))

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        node = self.config.node
        ae = AE(ae_title=node.ae_title)
        ae.maximum_pdu_size = node.max_pdu
        ae.require_called_aet = True
        ae.add_supported_context(Verification, UNCOMPRESSED)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ACCEPTED_SYNTAXES)
        handlers = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._on_ended),
            (evt.EVT_ABORTED, self._on_ended),
            (evt.EVT_CONN_CLOSE, self._on_ended),
        ]
        ssl_context = server_context(node.tls) if node.tls is not None else None
        self._server = ae.start_server((node.host, node.port), block=False, evt_handlers=handlers,
                                       ssl_context=ssl_context)
        logger.info("SCP %s listening on %s:%d", node.ae_title, node.host, self.port)

    @property
    def port(self) -> int:
        """The bound port (useful when the config asked for port 0)."""
        if self._server is None:
            return self.config.node.port
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
            logger.info("SCP stopped")

    # -- association checks --------------------------------------------------------------
    def is_allowed(self, calling_ae: str, address: str) -> bool:
        """Empty allow-list accepts anyone; otherwise AE must match and host if one is given.

        Read from the config on every request so a reloaded allow-list applies at once.
        """
        peers = self.config.allowed_peers
        if not peers:
            return True
        return any(p.ae_title == calling_ae.strip() and (p.host is None or p.host == address)
                   for p in peers)

    def _on_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        calling, _called = calling_called(assoc)
        address = assoc.requestor.address
        if not self.is_allowed(calling, address):
            reason = f"calling AE {calling!r} from {address} is not in allowed_peers"
            self._reject(assoc, "peer_rejected", reason, (0x01, 0x01, 0x03))  # calling AE unknown
            return
        shortage = self.disk_guard.check()
        if shortage is not None:  # transient, presentation provider, temporary congestion
            self._reject(assoc, "disk_low", shortage, (0x02, 0x03, 0x01))

    def _reject(self, assoc: Association, kind: str, reason: str,
                rj: tuple[int, int, int]) -> None:
        logger.warning("rejecting association %s: %s", peer_label(assoc), reason)
        record_event(self.db, kind, reason, peer=peer_label(assoc))
        assoc.acse.send_reject(*rj)
        assoc.kill()

    # -- DIMSE handlers ------------------------------------------------------------------
    def _on_echo(self, event: evt.Event) -> int:
        logger.debug("C-ECHO from %s", peer_label(event.assoc))
        return 0x0000

    def _assoc_key(self, assoc: Association) -> str:
        """`<peer address>/<random>`: unique per association, and carries the source address
        to the series row (rules match on it) without another column; <= 64 characters."""
        with self._lock:
            key = self._keys.get(id(assoc))
            if key is None:
                key = f"{assoc.requestor.address}/{uuid.uuid4().hex[:16]}"
                self._keys[id(assoc)] = key
            return key

    def _on_store(self, event: evt.Event) -> int:
        assoc = event.assoc
        label = peer_label(assoc)
        sop_uid = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        try:
            shortage = self.disk_guard.check()
            if shortage is not None:
                raise OutOfResources(shortage)
            data = event.encoded_dataset(include_meta=True)
            ds = parse_header(data)
            sop_uid = str(ds.SOPInstanceUID)
            series_uid = validate_uid(ds.SeriesInstanceUID, "SeriesInstanceUID")
            study_uid = validate_uid(ds.StudyInstanceUID, "StudyInstanceUID")
            sop_uid = validate_uid(ds.SOPInstanceUID, "SOPInstanceUID")
            path = store_instance(self.config.incoming_dir, study_uid, series_uid, sop_uid, data)
            del data  # the bytes are on disk: keep resident memory to one instance
            calling, called = calling_called(assoc)
            record_instance(self.db, ReceivedInstance(
                sop_instance_uid=sop_uid, series_uid=series_uid, study_uid=study_uid,
                sop_class=str(getattr(ds, "SOPClassUID", "") or event.request.AffectedSOPClassUID),
                path=str(path), calling_ae=calling, called_ae=called,
                assoc_key=self._assoc_key(assoc),
                modality=str(getattr(ds, "Modality", "") or ""),
                description=str(getattr(ds, "SeriesDescription", "") or ""),
                body_part=str(getattr(ds, "BodyPartExamined", "") or ""),
            ))
        except OutOfResources as exc:
            return self._fail(label, sop_uid, exc, exc.dicom_status, "disk_low")
        except VpetError as exc:
            return self._fail(label, sop_uid, exc, exc.dicom_status, "bad_input")
        except OSError as exc:
            status = 0xA700 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 0xC211
            err = OutOfResources(str(exc)) if status == 0xA700 else exc
            return self._fail(label, sop_uid, err, status,
                              "disk_low" if status == 0xA700 else "store_error")
        except Exception as exc:
            logger.exception("C-STORE %s from %s: unexpected error", sop_uid, label)
            return self._fail(label, sop_uid, exc, 0xC211, "store_error")
        logger.debug("C-STORE %s from %s stored at %s", sop_uid, label, path)
        return 0x0000

    def _fail(self, label: str, sop_uid: str, exc: BaseException, status: int, kind: str) -> int:
        reason = str(exc) or type(exc).__name__
        logger.error("C-STORE %s from %s refused with 0x%04X: %s", sop_uid or "?", label,
                     status, reason)
        record_event(self.db, kind, reason, sop_instance_uid=sop_uid or None, peer=label)
        return status

    def _on_ended(self, event: evt.Event) -> None:
        with self._lock:
            key = self._keys.pop(id(event.assoc), None)
        if key is None:
            return
        try:
            count = mark_released(self.db, key)
            logger.debug("association %s ended; %d series released", peer_label(event.assoc),
                         count)
        except Exception:
            logger.exception("could not mark series of %s as released", peer_label(event.assoc))
