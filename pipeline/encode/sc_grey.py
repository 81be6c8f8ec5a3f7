"""Multi-frame Grayscale Byte Secondary Capture: the virtual PET alone, inverted grey.

Why: nuclear-medicine readers look at PET as inverted grey (hot = black) in a fixed SUV window
(0..7 SUVbw; 0..3 SUVR), and every viewer shows 8-bit grey. The window is burned into the
pixels, with the notice, so the picture is the same everywhere (PS3.3 A.8.3, built with
pydicom because highdicom writes single-frame SC only).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.encode.common import write
from pipeline.encode.sc_common import sc_dataset
from pipeline.render import burn_notice
from pipeline.series import Volume
from pipeline.types import OutputFile

log = logging.getLogger(__name__)

SC_MULTIFRAME_GREY_BYTE = "1.2.840.10008.5.1.4.1.1.7.2"
WINDOWS = {"SUVbw": (0.0, 7.0), "SUVR": (0.0, 3.0)}


def grey_frames(suv: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """(frames, rows, cols) uint8: 255 at the window's low end, 0 at its top (inverted)."""
    low, high = window
    out = np.empty(suv.shape, np.uint8)
    for k in range(suv.shape[0]):
        t = np.clip((suv[k] - low) / (high - low), 0.0, 1.0)
        grey = np.rint(255.0 * (1.0 - t)).astype(np.uint8)
        out[k] = burn_notice(np.repeat(grey[..., None], 3, axis=2))[..., 0]
    return out


def encode_sc_grey(volume: Volume, suv: np.ndarray, out_dir: Path, *, model_version: str,
                   units: str = "SUVbw") -> OutputFile:
    """Write `sc_grey.dcm`: one inverted-grey frame per source frame (frame order)."""
    window = WINDOWS.get(units, WINDOWS["SUVbw"])
    ds = sc_dataset(volume, SC_MULTIFRAME_GREY_BYTE, "sc_grey", model_version=model_version,
                    units=units, description=f"virtual PET ({units}) synthesized by model "
                    f"{model_version}, inverted grey window {window[0]:g}..{window[1]:g} "
                    f"{units}; synthetic, research only")
    frames = grey_frames(suv, window)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = int(frames.shape[0])
    # Byte SC: identity rescale and presentation are Type 1 (PS3.3 C.8.6.2).
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.PixelData = frames.tobytes()
    return write(ds, out_dir, "sc_grey")
