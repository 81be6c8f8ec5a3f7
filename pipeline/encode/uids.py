"""Deterministic UIDs for outputs: the same inputs always give the same UIDs.

Why: the sender retries and jobs can be re-run; a PACS must see the same SOP Instance UID
again (an update), never a duplicate. UIDs are name-based UUIDs (ISO/IEC 9834-8, the "2.25."
root) of the sorted source SOP Instance UIDs, the model version and the output kind.
`pydicom.uid.generate_uid(entropy_srcs=...)` is not used because with the "2.25." prefix it
truncates a SHA-512 number (not a UUID) and it joins parts without a separator, so
("ab", "c") and ("a", "bc") would collide.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import pydicom

_NAMESPACE = uuid.UUID("6f1f7d5e-2b9a-5c41-9d0e-7a1e5f0c3b21")  # virtual-pet's own namespace


def derive_uid(*parts: str) -> str:
    """A '2.25.<uuid5 integer>' UID from the parts (order matters, separator-safe)."""
    name = "\x1f".join(str(p) for p in parts)
    return f"2.25.{uuid.uuid5(_NAMESPACE, name).int}"


def source_key(datasets: Iterable[pydicom.Dataset]) -> str:
    """One string identifying the input instances, independent of their order."""
    return "|".join(sorted(str(ds.SOPInstanceUID) for ds in datasets))


def output_uids(datasets: Iterable[pydicom.Dataset], model_version: str, kind: str,
                instance: int = 1) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of output `kind` number `instance`."""
    key = source_key(datasets)
    return (derive_uid(key, model_version, kind, "series"),
            derive_uid(key, model_version, kind, "instance", str(instance)))
