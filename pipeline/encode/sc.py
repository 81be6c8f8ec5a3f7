"""Multi-frame True Color Secondary Capture: fused CT/MR + virtual PET, one frame per slice.

Why: many viewers cannot show Parametric Maps; a colour rendering with the notice burned in
is readable everywhere. highdicom writes single-frame SC only, so this is built with pydicom
(Multi-frame True Color SC Image IOD, PS3.3 A.8.5). Frame positions go into the SC Multi-frame
Vector module (SliceLocationVector); this IOD has no plane position functional groups and no
Frame of Reference module (dciodvfy flags FrameOfReferenceUID as "not in IOD"), so the link to
the source geometry is SourceImageSequence (one item per frame, same order) + PixelSpacing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom

from pipeline.encode.common import write
from pipeline.encode.sc_common import sc_dataset
from pipeline.render import burn_notice, fuse, window
from pipeline.series import Volume
from pipeline.types import OutputFile

log = logging.getLogger(__name__)

SC_MULTIFRAME_TRUE_COLOR = "1.2.840.10008.5.1.4.1.1.7.4"


def render_frames(volume: Volume, suv: np.ndarray, labels: np.ndarray | None,
                  vmax: float) -> np.ndarray:
    """(frames, rows, cols, 3) uint8 fused frames, each carrying the burned-in notice.

    `suv` and `labels` are on the source frames (sorted along the normal), like the base.
    """
    base = volume.source_array()
    win = window(base, volume.modality)
    out = np.empty((*base.shape, 3), np.uint8)
    for k in range(base.shape[0]):
        out[k] = burn_notice(fuse(base[k], suv[k], None if labels is None else labels[k],
                                  win=win, vmax=vmax))
    return out


def encode_sc(volume: Volume, suv: np.ndarray, labels: np.ndarray | None, out_dir: Path, *,
              model_version: str, units: str = "SUVbw", vmax: float = 8.0) -> OutputFile:
    """Write `sc.dcm`, frames pixel-aligned with the source frames."""
    ds = sc_dataset(volume, SC_MULTIFRAME_TRUE_COLOR, "sc", model_version=model_version,
                    units=units, description=f"virtual PET ({units}) synthesized by model "
                    f"{model_version}, fused on source; synthetic, research only")
    frames = render_frames(volume, suv, labels, vmax)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = int(frames.shape[0])
    ds.PixelData = frames.tobytes()
    return write(ds, out_dir, "sc")


def read_frames(path: Path) -> np.ndarray:
    """The RGB frames of a written SC (for tests and checks)."""
    return pydicom.dcmread(path).pixel_array
