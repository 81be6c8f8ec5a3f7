"""Outgoing DICOM: C-ECHO and C-STORE of files to one remote AE.

Why: PACS refuse what they were not offered, so each file's exact SOP class is proposed with
uncompressed transfer syntaxes, and a refused context is reported per file, not as a crash.
Association-level failures (refused connection, rejected association) raise DeliveryError.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification

from pipeline.errors import DeliveryError

logger = logging.getLogger(__name__)

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
_WARNING = {0xB000, 0xB006, 0xB007}


@dataclass(frozen=True)
class SendResult:
    """Outcome of one file: `ok` when the peer answered Success or a Warning."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and (
            self.status == 0 or self.status in _WARNING)


def _make_ae(calling_ae: str, timeout: float) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    return ae


def _describe_failure(assoc: Association, ae_title: str, host: str, port: int) -> str:
    where = f"{ae_title}@{host}:{port}"
    if assoc.is_rejected:
        return f"association rejected by {where}"
    try:  # pynetdicom reports a failed TCP connect as an abort: tell them apart
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        return f"connection to {where} failed: {exc.strerror or exc}"
    if assoc.is_aborted:
        return f"association aborted by {where}"
    return f"no association with {where} (timeout)"


def echo(ae_title: str, host: str, port: int, calling_ae: str = "VPET",
         timeout: float = 10.0, tls_args: tuple | None = None) -> int:
    """C-ECHO; returns the status (0 = success), raises DeliveryError if no association."""
    ae = _make_ae(calling_ae, timeout)
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=ae_title, tls_args=tls_args)
    if not assoc.is_established:
        raise DeliveryError(_describe_failure(assoc, ae_title, host, port))
    try:
        quiesce_reactor(assoc)
        rsp = assoc.send_c_echo()
        if "Status" not in rsp:
            raise DeliveryError(f"no C-ECHO response from {ae_title}@{host}:{port}")
        return int(rsp.Status)
    finally:
        assoc.release()


@dataclass(frozen=True)
class _FileInfo:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str


def _inspect(path: Path) -> _FileInfo:
    ds = pydicom.dcmread(path, stop_before_pixels=True,
                         specific_tags=["SOPClassUID", "SOPInstanceUID"])
    meta = ds.file_meta
    return _FileInfo(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                     str(meta.TransferSyntaxUID))


def send_files(files: Iterable[Path | str], ae_title: str, host: str, port: int,
               calling_ae: str = "VPET", timeout: float = 30.0,
               on_result: Callable[[SendResult], None] | None = None,
               tls_args: tuple | None = None) -> list[SendResult]:
    """C-STORE every file over one association; one SendResult per file, in order.

    `on_result` is called after each file (the sender records it at once, so a crash
    mid-association re-sends at most the one instance in flight). `tls_args` is pynetdicom's
    `(ssl_context, server_hostname)` for DICOM TLS.
    """
    infos: list[_FileInfo | SendResult] = []
    for f in files:
        try:
            infos.append(_inspect(Path(f)))
        except Exception as exc:  # noqa: BLE001 - report the unreadable file, send the rest
            infos.append(SendResult(Path(f), "", "", None, f"cannot read {f}: {exc}"))
    readable = [i for i in infos if isinstance(i, _FileInfo)]
    if not readable:
        return [i for i in infos if isinstance(i, SendResult)]

    ae = _make_ae(calling_ae, timeout)
    for sop_class in dict.fromkeys(i.sop_class_uid for i in readable):
        syntaxes = list(dict.fromkeys(
            UNCOMPRESSED + [i.transfer_syntax for i in readable if i.sop_class_uid == sop_class]))
        ae.add_requested_context(sop_class, syntaxes)
    assoc = ae.associate(host, port, ae_title=ae_title, tls_args=tls_args)
    if not assoc.is_established:
        raise DeliveryError(_describe_failure(assoc, ae_title, host, port))
    results: list[SendResult] = []
    try:
        for item in infos:
            result = item if isinstance(item, SendResult) else _store_one(assoc, item)
            results.append(result)
            if on_result is not None:
                on_result(result)
            if isinstance(item, SendResult):
                continue
            if not assoc.is_established:
                raise DeliveryError(f"association with {ae_title}@{host}:{port} ended "
                                    f"while sending {item.path.name}")
    finally:
        if assoc.is_established:
            assoc.release()
    return results


def quiesce_reactor(assoc: Association) -> None:
    """Wait until the association's reactor thread is blocked, before a send_c_*() call.

    Why: pynetdicom 3.0's send_c_*() pauses the reactor by clearing an event and waiting for
    `_is_paused`, but the reactor sets that flag just before its wait() returns too, so the
    sender can pass while the reactor goes on to read the message queue once more. On a fast
    peer (localhost, TCP_NODELAY) the C-STORE response is already there: the reactor takes it
    as an "unexpected C-STORE service message", the sender waits out the DIMSE timeout and the
    association is aborted. So this waits (at most 1 s) until the reactor thread is a waiter
    of the event itself (threading.Condition's waiter list). Where pynetdicom or Python keep
    those elsewhere, pynetdicom's own pause is all there is."""
    checkpoint = getattr(assoc, "_reactor_checkpoint", None)
    waiters = getattr(getattr(checkpoint, "_cond", None), "_waiters", None)
    if waiters is None or not assoc.is_established:
        return
    checkpoint.clear()
    deadline = time.monotonic() + 1.0
    while not waiters and assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.0001)


def _store_one(assoc: Association, item: _FileInfo) -> SendResult:
    accepted = {cx.transfer_syntax[0] for cx in assoc.accepted_contexts
                if cx.abstract_syntax == item.sop_class_uid}
    if not accepted:
        name = UID(item.sop_class_uid).name
        return SendResult(item.path, item.sop_class_uid, item.sop_instance_uid, None,
                          f"presentation context refused for {name} ({item.sop_class_uid})")
    # Same transfer syntax accepted: send the file's bytes as they are; else re-encode.
    payload: Path | pydicom.Dataset = item.path
    if item.transfer_syntax not in accepted:
        payload = pydicom.dcmread(item.path)
    quiesce_reactor(assoc)
    rsp = assoc.send_c_store(payload)
    if "Status" not in rsp:
        return SendResult(item.path, item.sop_class_uid, item.sop_instance_uid, None,
                          "no C-STORE response (timeout or abort)")
    status = int(rsp.Status)
    result = SendResult(item.path, item.sop_class_uid, item.sop_instance_uid, status)
    if not result.ok:
        return SendResult(item.path, item.sop_class_uid, item.sop_instance_uid, status,
                          f"C-STORE failed with status 0x{status:04X}")
    return result
