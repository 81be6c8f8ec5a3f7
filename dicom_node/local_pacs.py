"""A minimal Storage SCP that stands in for the PACS in `vpet demo` and in tests.

It keeps every instance it receives as a file, so what came back can be inspected exactly as
a PACS would have stored it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from dicom_node.storage import is_valid_uid

log = logging.getLogger(__name__)


@dataclass
class LocalPACS:
    """Storage SCP on 127.0.0.1:`port` writing received instances under `folder`.

    `folder` None keeps only the records (tests); `sop_classes` limits what it accepts (a PACS
    that refuses some objects); `delay_s` answers slowly (a send can be interrupted mid-way).
    `instances` lists (SOP Class, SOP Instance) in arrival order, `counts` stores per instance.
    """

    folder: Path | None
    port: int
    ae_title: str = "LOCALPACS"
    sop_classes: list[str] | None = None
    delay_s: float = 0.0
    received: list[Path] = field(default_factory=list)
    instances: list[tuple[str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    _server: object | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Self:
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=self.ae_title)
        classes = self.sop_classes or [c.abstract_syntax for c in AllStoragePresentationContexts]
        for uid in classes:
            ae.add_supported_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ae.add_supported_context(Verification)
        handlers = [(evt.EVT_C_STORE, self._on_store)]
        self._server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_store(self, event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        if not is_valid_uid(uid):
            return 0xC210
        path = None
        if self.folder is not None:
            path = self.folder / f"{uid}.dcm"
            path.write_bytes(event.encoded_dataset())
        with self._lock:
            if path is not None:
                self.received.append(path)
            self.instances.append((str(event.request.AffectedSOPClassUID), uid))
            self.counts[uid] += 1  # stored, then answered (after the delay)
        time.sleep(self.delay_s)
        return 0x0000

    def count(self) -> int:
        """Stores answered so far (re-sent instances count again)."""
        with self._lock:
            return len(self.instances)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
