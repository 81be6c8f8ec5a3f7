"""PDU framing (PS3.8 section 9): read one PDU, parse A-ASSOCIATE-RQ, encode our answers.

Why hand-written: the acceptor needs six PDU types and a handful of items; decoding them
directly from a memoryview costs microseconds and keeps large P-DATA bodies uncopied.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07
PDU_TYPES = {ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT}

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
# derive_uid("virtual-pet", "implementation class") of pipeline/encode/uids.py: our own UUID UID
IMPLEMENTATION_CLASS_UID = "2.25.6148795639450887031356716564189908260"
IMPLEMENTATION_VERSION = "VPET_UL_1"

_HEADER = struct.Struct(">BxL")
_ITEM = struct.Struct(">BxH")


class PduError(Exception):
    """The peer sent something that is not a well-formed PDU (answered with A-ABORT)."""


class PeerClosed(Exception):
    """The transport connection ended (cleanly or not) while a PDU was expected."""


@dataclass
class ProposedContext:
    """One presentation context of an A-ASSOCIATE-RQ."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: list[str]


@dataclass
class AssociateRequest:
    """What the acceptor needs from an A-ASSOCIATE-RQ."""

    protocol_version: int
    called_ae: str
    calling_ae: str
    application_context: str
    contexts: list[ProposedContext] = field(default_factory=list)
    max_pdu: int = 0  # the largest PDU the requestor accepts from us; 0 = unlimited
    implementation_class_uid: str = ""


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux


def recv_exactly(sock: socket.socket, view: memoryview, flags: int = 0) -> None:
    """Fill `view` from the socket; PeerClosed when the stream ends first.

    Each read re-arms TCP_QUICKACK: a sender without TCP_NODELAY (pynetdicom, DCMTK's
    default) holds its next small segment until the previous one is acknowledged (Nagle),
    and the kernel's delayed ACK would make it wait ~40 ms per instance (measured: 128 MR
    slices took 5.7 s instead of 0.12 s). `flags` MSG_WAITALL (blocking sockets only, see
    `use_kernel_timeouts`) lets one system call fill a whole PDU instead of one per segment
    burst. A kernel receive timeout (EAGAIN on a blocking socket) is a TimeoutError.
    """
    while view:
        try:
            n = sock.recv_into(view, len(view), flags)
        except BlockingIOError:
            raise TimeoutError("no data from the peer within the receive timeout") from None
        if n == 0:
            raise PeerClosed("connection closed by peer")
        if _QUICKACK is not None:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        view = view[n:]


def use_kernel_timeouts(sock: socket.socket, seconds: float) -> int:
    """Make a plain TCP socket blocking with kernel send/receive timeouts; returns the recv
    flags to use (MSG_WAITALL). Why: a Python socket with a timeout is non-blocking and
    polls before every read (one extra system call per read, and no MSG_WAITALL); the
    kernel timeouts keep the idle limit without either."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    return socket.MSG_WAITALL


class PduReader:
    """Reads whole PDUs into one reused buffer (grown on demand, capped)."""

    def __init__(self, sock: socket.socket, max_body: int) -> None:
        self.sock = sock
        self.max_body = max_body
        self.flags = 0  # MSG_WAITALL once the socket is blocking (use_kernel_timeouts)
        self._buf = bytearray(64 * 1024)
        self._head = memoryview(bytearray(6))

    def read(self) -> tuple[int, memoryview]:
        """(PDU type, body) — the body view is valid until the next call."""
        recv_exactly(self.sock, self._head, self.flags)
        pdu_type, length = _HEADER.unpack(self._head)
        if pdu_type not in PDU_TYPES:
            raise PduError(f"unknown PDU type 0x{pdu_type:02X}")
        if length > self.max_body:
            raise PduError(f"PDU of {length} bytes exceeds the limit of {self.max_body}")
        if length > len(self._buf):
            self._buf = bytearray(length)
        body = memoryview(self._buf)[:length]
        recv_exactly(self.sock, body, self.flags)
        return pdu_type, body


def _text(raw: memoryview | bytes) -> str:
    return bytes(raw).decode("ascii", "replace").strip(" \x00")


def _items(body: memoryview, start: int):
    """Yield (item type, value view) for the variable items from `start`."""
    pos = start
    while pos < len(body):
        if pos + 4 > len(body):
            raise PduError("truncated item header")
        item_type, length = _ITEM.unpack_from(body, pos)
        end = pos + 4 + length
        if end > len(body):
            raise PduError(f"item 0x{item_type:02X} runs past the end of the PDU")
        yield item_type, body[pos + 4:end]
        pos = end


def parse_associate_rq(body: memoryview) -> AssociateRequest:
    """Decode an A-ASSOCIATE-RQ body (after the 6-byte header)."""
    if len(body) < 68:
        raise PduError("A-ASSOCIATE-RQ shorter than its fixed fields")
    (version,) = struct.unpack_from(">H", body, 0)
    rq = AssociateRequest(version, _text(body[4:20]), _text(body[20:36]), "")
    for item_type, value in _items(body, 68):
        if item_type == 0x10:
            rq.application_context = _text(value)
        elif item_type == 0x20:
            rq.contexts.append(_parse_context(value))
        elif item_type == 0x50:
            _parse_user_information(value, rq)
    return rq


def _parse_context(value: memoryview) -> ProposedContext:
    if len(value) < 4:
        raise PduError("presentation context item too short")
    ctx = ProposedContext(value[0], "", [])
    for sub_type, sub in _items(value, 4):
        if sub_type == 0x30:
            ctx.abstract_syntax = _text(sub)
        elif sub_type == 0x40:
            ctx.transfer_syntaxes.append(_text(sub))
    return ctx


def _parse_user_information(value: memoryview, rq: AssociateRequest) -> None:
    for sub_type, sub in _items(value, 0):
        if sub_type == 0x51 and len(sub) == 4:
            (rq.max_pdu,) = struct.unpack(">L", sub)
        elif sub_type == 0x52:
            rq.implementation_class_uid = _text(sub)
        # 0x53 async window, 0x54 role selection, 0x56/0x57 extended negotiation, 0x58 user
        # identity: not answered, so the defaults apply (no async operations, requestor is
        # SCU, no extended behaviour), as PS3.7 D.3.3 allows.


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return _HEADER.pack(pdu_type, len(body)) + body


def _item(item_type: int, value: bytes) -> bytes:
    return _ITEM.pack(item_type, len(value)) + value


def _ae(title: str) -> bytes:
    return title.encode("ascii", "replace")[:16].ljust(16, b" ")


def encode_associate_ac(rq: AssociateRequest, results: list[tuple[int, int, str]],
                        max_pdu: int) -> bytes:
    """A-ASSOCIATE-AC; `results` = (context id, result 0..4, transfer syntax) per context."""
    body = bytearray(struct.pack(">HH", 1, 0) + _ae(rq.called_ae) + _ae(rq.calling_ae)
                     + bytes(32))
    body += _item(0x10, APPLICATION_CONTEXT.encode())
    for context_id, result, syntax in results:
        body += _item(0x21, bytes([context_id, 0, result, 0]) + _item(0x40, syntax.encode()))
    user = (_item(0x51, struct.pack(">L", max_pdu))
            + _item(0x52, IMPLEMENTATION_CLASS_UID.encode())
            + _item(0x55, IMPLEMENTATION_VERSION.encode()))
    body += _item(0x50, user)
    return _pdu(ASSOCIATE_AC, bytes(body))


def encode_associate_rj(result: int, source: int, reason: int) -> bytes:
    return _pdu(ASSOCIATE_RJ, bytes([0, result, source, reason]))


def encode_release_rp() -> bytes:
    return _pdu(RELEASE_RP, bytes(4))


def encode_abort(source: int = 2, reason: int = 0) -> bytes:
    """A-ABORT; source 2 = service provider (we found a protocol problem), 0 = user."""
    return _pdu(ABORT, bytes([0, 0, source, reason]))


def encode_p_data(context_id: int, command: bytes, peer_max_pdu: int = 0) -> bytes:
    """P-DATA-TF PDU(s) carrying a whole command set: one PDU, or as many as the requestor's
    maximum PDU length (0 = unlimited) needs, the last fragment flagged."""
    room = len(command) if peer_max_pdu == 0 else max(1, peer_max_pdu - 6)
    out = bytearray()
    for start in range(0, len(command), room):
        part = command[start:start + room]
        control = 0x03 if start + room >= len(command) else 0x01
        out += _pdu(P_DATA_TF, struct.pack(">LBB", len(part) + 2, context_id, control) + part)
    return bytes(out)


def iter_pdvs(body: memoryview):
    """Yield (context id, control header, data view) for each PDV item of a P-DATA-TF."""
    pos, end = 0, len(body)
    while pos < end:
        if pos + 6 > end:
            raise PduError("truncated PDV item")
        (length,) = struct.unpack_from(">L", body, pos)
        if length < 2 or pos + 4 + length > end:
            raise PduError(f"PDV item length {length} is invalid")
        yield body[pos + 4], body[pos + 5], body[pos + 6:pos + 4 + length]
        pos += 4 + length
