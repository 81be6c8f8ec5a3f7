"""One accepted connection, from A-ASSOCIATE-RQ to release or abort, on its own thread.

Why this shape: storing is strictly request/response per association, so a plain blocking
loop (read PDU, act, answer) is both the simplest and the fastest design; dataset fragments go
from the receive buffer straight into the instance's file. Every way a peer can misbehave
(garbage, a wrong PDU, silence, a dropped connection) ends this association alone, with a log
line naming the peer; the listening server and other associations never notice.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from dicom_node.intake import IncomingFile, Intake, Peer
from dicom_node.ul import dimse
from dicom_node.ul.pdu import (
    ABORT,
    APPLICATION_CONTEXT,
    ASSOCIATE_RQ,
    P_DATA_TF,
    RELEASE_RQ,
    AssociateRequest,
    PduError,
    PduReader,
    PeerClosed,
    encode_abort,
    encode_associate_ac,
    encode_associate_rj,
    encode_p_data,
    encode_release_rp,
    iter_pdvs,
    parse_associate_rq,
    use_kernel_timeouts,
)

logger = logging.getLogger("dicom_node.scp")

ABSTRACT_NOT_SUPPORTED, SYNTAX_NOT_SUPPORTED = 3, 4
SLOW_STORE_S = 5.0


@dataclass(frozen=True)
class AcceptorSettings:
    """What the association needs to know besides the intake policy."""

    max_pdu: int  # advertised to the requestor (0 = unlimited)
    abstract_syntaxes: frozenset[str]  # SOP classes we accept
    transfer_syntaxes: frozenset[str]  # transfer syntaxes we accept (any order)
    ssl_context: ssl.SSLContext | None = None
    associate_timeout_s: float = 30.0  # ARTIM: the request (and TLS handshake) must arrive
    idle_timeout_s: float = 60.0  # no PDU for this long: abort
    max_pdu_body: int = 64 * 1024 * 1024  # larger PDUs are refused (memory bound)
    max_associations: int = 32  # more at once are rejected as "local limit exceeded"


class _Pending:
    """A request whose dataset fragments are still arriving."""

    def __init__(self, request: dict, context_id: int, incoming: IncomingFile | None,
                 error: Exception | None) -> None:
        self.request, self.context_id = request, context_id
        self.incoming, self.error = incoming, error


class Association:
    """Serves one connection; `run()` returns when it is over (never raises)."""

    def __init__(self, sock: socket.socket, address: tuple[str, int], intake: Intake,
                 settings: AcceptorSettings, notify: Callable[[str], None], *,
                 over_limit: bool = False) -> None:
        self.sock = sock
        self.over_limit = over_limit  # the server already runs max_associations
        self.address = address
        self.intake = intake
        self.settings = settings
        self.notify = notify  # outcome: accepted, rejected, released, aborted
        self.peer: Peer | None = None
        self.instances = 0
        self._contexts: dict[int, str] = {}  # accepted context id -> transfer syntax
        self._peer_max_pdu = 0  # the requestor's maximum PDU length (0 = unlimited)
        self._command = bytearray()
        self._pending: _Pending | None = None

    @property
    def label(self) -> str:
        return self.peer.label if self.peer else f"?@{self.address[0]}:{self.address[1]}"

    # -- life ----------------------------------------------------------------------------
    def run(self) -> None:
        established = False
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.settimeout(self.settings.associate_timeout_s)
            if self.settings.ssl_context is not None:
                self.sock = self.settings.ssl_context.wrap_socket(self.sock, server_side=True)
                self.sock.do_handshake()
            reader = PduReader(self.sock, self.settings.max_pdu_body)
            if not self._associate(reader):
                return
            established = True
            if isinstance(self.sock, ssl.SSLSocket):  # TLS reads take no flags
                self.sock.settimeout(self.settings.idle_timeout_s)
            else:
                reader.flags = use_kernel_timeouts(self.sock, self.settings.idle_timeout_s)
            outcome = self._serve(reader)
            self.notify(outcome)
        except PeerClosed:
            if established:
                logger.warning("association %s: connection closed without release", self.label)
                self.notify("aborted")
        except (PduError, dimse.CommandError) as exc:
            logger.warning("association %s: protocol error, aborting: %s", self.label, exc)
            self._send_quietly(encode_abort(2, 2))  # provider, unexpected PDU parameter
            if established:
                self.notify("aborted")
        except TimeoutError:
            what = "idle" if established else "no A-ASSOCIATE-RQ"
            logger.warning("association %s: %s for too long, aborting", self.label, what)
            self._send_quietly(encode_abort(2, 0))
            if established:
                self.notify("aborted")
        except (ssl.SSLError, OSError) as exc:
            logger.warning("association %s: transport error: %s", self.label, exc)
            if established:
                self.notify("aborted")
        except Exception:
            logger.exception("association %s: unexpected error, aborting", self.label)
            self._send_quietly(encode_abort(2, 0))
            if established:
                self.notify("aborted")
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._pending is not None and self._pending.incoming is not None:
            self._pending.incoming.close_and_discard()  # never acknowledged: the sender re-sends
        if self.peer is not None:
            self.intake.ended(self.peer, self.instances)
        try:
            self.sock.close()
        except OSError:
            pass

    def _send_quietly(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    # -- A-ASSOCIATE ---------------------------------------------------------------------
    def _associate(self, reader: PduReader) -> bool:
        pdu_type, body = reader.read()
        if pdu_type != ASSOCIATE_RQ:
            raise PduError(f"expected A-ASSOCIATE-RQ, got PDU type 0x{pdu_type:02X}")
        rq = parse_associate_rq(body)
        self._peer_max_pdu = rq.max_pdu
        self.peer = Peer(rq.calling_ae, rq.called_ae, self.address[0], self.address[1],
                         f"{self.address[0]}/{uuid.uuid4().hex[:16]}")
        rejection = None
        if not rq.protocol_version & 1:
            rejection = (1, 2, 2)  # provider (ACSE): protocol version not supported
        elif rq.application_context != APPLICATION_CONTEXT:
            rejection = (1, 1, 2)  # user: application context name not supported
        if rejection is not None:
            logger.warning("rejecting association %s: protocol version %d, context %r",
                           self.label, rq.protocol_version, rq.application_context)
        elif self.over_limit:
            rejection = (2, 3, 2)  # transient, provider (presentation), local limit exceeded
            self.intake.refuse(self.peer, "busy", f"{self.settings.max_associations} "
                               "associations already open (node.max_associations)")
        else:
            refused = self.intake.check_association(self.peer)
            if refused is not None:
                rejection = (refused.result, refused.source, refused.reason)
        if rejection is not None:
            self.sock.sendall(encode_associate_rj(*rejection))
            self.notify("rejected")
            self.peer = None  # nothing was received: no series to release
            return False
        self.sock.sendall(encode_associate_ac(rq, self._negotiate(rq), self.settings.max_pdu))
        self.notify("accepted")
        logger.debug("association %s accepted (%d of %d contexts)", self.label,
                     len(self._contexts), len(rq.contexts))
        return True

    def _negotiate(self, rq: AssociateRequest) -> list[tuple[int, int, str]]:
        """Accept each supported SOP class with the first syntax the requestor proposed that
        we accept (its preference: senders list the syntax the data already has first)."""
        results = []
        for ctx in rq.contexts:
            if ctx.abstract_syntax not in self.settings.abstract_syntaxes:
                results.append((ctx.context_id, ABSTRACT_NOT_SUPPORTED, "1.2.840.10008.1.2"))
                continue
            chosen = next((ts for ts in ctx.transfer_syntaxes
                           if ts in self.settings.transfer_syntaxes), None)
            if chosen is None:
                results.append((ctx.context_id, SYNTAX_NOT_SUPPORTED, "1.2.840.10008.1.2"))
                continue
            self._contexts[ctx.context_id] = chosen
            results.append((ctx.context_id, 0, chosen))
        return results

    # -- data transfer -------------------------------------------------------------------
    def _serve(self, reader: PduReader) -> str:
        """Handle PDUs until release or abort; returns the outcome."""
        while True:
            pdu_type, body = reader.read()
            if pdu_type == P_DATA_TF:
                for context_id, control, data in iter_pdvs(body):
                    self._pdv(context_id, control, data)
            elif pdu_type == RELEASE_RQ:
                self.sock.sendall(encode_release_rp())
                logger.debug("association %s released after %d instance(s)", self.label,
                             self.instances)
                return "released"
            elif pdu_type == ABORT:
                logger.warning("association %s aborted by the peer", self.label)
                return "aborted"
            else:
                raise PduError(f"unexpected PDU type 0x{pdu_type:02X} during data transfer")

    def _pdv(self, context_id: int, control: int, data: memoryview) -> None:
        if context_id not in self._contexts:
            raise PduError(f"PDV on presentation context {context_id}, which was not accepted")
        if control & 0x01:  # command fragment
            if self._pending is not None:
                raise PduError("a command arrived before the previous dataset was complete")
            self._command += data
            if control & 0x02:
                request = dimse.decode_command(self._command)
                self._command.clear()
                self._on_command(context_id, request)
            return
        pending = self._pending
        if pending is None or pending.context_id != context_id:
            raise PduError("dataset fragment without a C-STORE request on its context")
        if pending.incoming is not None:
            try:
                pending.incoming.write(data)
            except OSError as exc:  # disk full mid-dataset: keep reading, answer a failure
                pending.incoming.close_and_discard()
                pending.incoming, pending.error = None, exc
        if control & 0x02:
            self._pending = None
            self._complete(pending)

    def _on_command(self, context_id: int, request: dict) -> None:
        field = request["CommandField"]
        has_dataset = request.get("CommandDataSetType", dimse.NO_DATASET) != dimse.NO_DATASET
        if field == dimse.C_ECHO_RQ:
            logger.debug("C-ECHO from %s", self.label)
            self.sock.sendall(encode_p_data(context_id, dimse.echo_response(request),
                                            self._peer_max_pdu))
        elif field == dimse.C_STORE_RQ and has_dataset:
            incoming, error = None, None
            try:
                incoming = self.intake.begin(
                    self.peer, str(request.get("AffectedSOPClassUID", "")),
                    str(request.get("AffectedSOPInstanceUID", "")), self._contexts[context_id])
            except Exception as exc:  # noqa: BLE001 - refused before any byte: read the dataset, answer
                error = exc
            self._pending = _Pending(request, context_id, incoming, error)
        else:
            raise PduError(f"unsupported DIMSE command 0x{field:04X}"
                           f"{' with' if has_dataset else ' without'} a dataset")

    def _complete(self, pending: _Pending) -> None:
        request = pending.request
        if pending.error is not None:
            status, comment = self.intake.failed(
                self.peer, str(request.get("AffectedSOPInstanceUID", "")), pending.error)
        else:
            started = time.monotonic()
            status, comment = self.intake.finish(self.peer, pending.incoming)
            took = time.monotonic() - started
            if took > SLOW_STORE_S:  # senders time out at ~30 s: say why before they do
                logger.warning("C-STORE %s from %s: making it durable and indexed took %.1f s "
                               "(slow storage disk or a long database lock)",
                               request.get("AffectedSOPInstanceUID", "?"), self.label, took)
        self.instances += 1
        self.sock.sendall(encode_p_data(pending.context_id,
                                        dimse.store_response(request, status, comment),
                                        self._peer_max_pdu))
