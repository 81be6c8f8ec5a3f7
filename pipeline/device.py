"""Which torch device a command runs on.

Why its own module: the trainers and benchmarks resolve "auto" too, and must not import the
node's worker (database, DICOM networking) just for that, e.g. on a bare GPU machine.
"""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
