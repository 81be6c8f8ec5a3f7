"""The listening socket: accept, hand each connection to its own Association thread, stop.

Why threads: an association is a blocking request/response conversation and a hospital sends
at most tens at once; a thread each keeps the code linear, and fsync/SQLite release the GIL.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from dicom_node.intake import Intake
from dicom_node.ul.association import AcceptorSettings, Association

logger = logging.getLogger("dicom_node.scp")


class AcceptorServer:
    """Listens on (host, port); `start()` returns once bound; `stop()` ends everything."""

    def __init__(self, host: str, port: int, intake: Intake, settings: AcceptorSettings) -> None:
        self.host, self.requested_port = host, port
        self.intake = intake
        self.settings = settings
        self.listeners: list[Callable[[str], None]] = []  # called with each outcome
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._active: dict[int, tuple[threading.Thread, Association]] = {}
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1] if self._sock else self.requested_port

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.requested_port))
        sock.listen(128)
        sock.settimeout(0.25)  # lets the loop notice stop(); accept itself is not delayed
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="vpet-scp-accept",
                                        daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, address = self._sock.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stopping.is_set():
                    break
                logger.warning("accept failed: %s", exc)  # e.g. EMFILE: keep serving
                self._stopping.wait(0.1)
                continue
            self._spawn(conn, address)

    def _spawn(self, conn: socket.socket, address: tuple) -> None:
        with self._lock:
            busy = len(self._active) >= self.settings.max_associations
        assoc = Association(conn, (address[0], address[1]), self.intake, self.settings,
                            self._notify, over_limit=busy)
        thread = threading.Thread(target=self._run, args=(assoc,), daemon=True,
                                  name=f"vpet-assoc-{address[0]}:{address[1]}")
        with self._lock:
            self._active[id(assoc)] = (thread, assoc)
        thread.start()

    def _run(self, assoc: Association) -> None:
        try:
            assoc.run()
        finally:
            with self._lock:
                self._active.pop(id(assoc), None)

    def _notify(self, outcome: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(outcome)
            except Exception:
                logger.exception("association listener failed")

    def active_count(self) -> int:
        with self._lock:
            return len(self._active)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, end open associations (their unacknowledged data is dropped)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            active = list(self._active.values())
        for _thread, assoc in active:
            try:
                assoc.sock.shutdown(socket.SHUT_RDWR)  # unblocks its read; it cleans up
            except OSError:
                pass
        for thread, _assoc in active:
            thread.join(timeout)
