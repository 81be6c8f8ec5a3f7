"""`run`: one series in, DICOM results out. A readable straight line of stages.

Why: the worker calls this one function; each stage is its own module, and the seconds per
stage are returned for reporting and benchmarks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pydicom
import SimpleITK as sitk

from pipeline.encode.pm import encode_pm
from pipeline.encode.sc import encode_sc
from pipeline.encode.seg import encode_seg
from pipeline.encode.sr import encode_sr
from pipeline.errors import InputError
from pipeline.lesions import detect_lesions
from pipeline.models.package import ModelPackage, load_package
from pipeline.preview import write_preview
from pipeline.resample import CT_DEFAULT, SUV_DEFAULT, resample_onto, resample_to_spacing
from pipeline.series import Volume, load_series
from pipeline.types import OutputFile, PipelineResult, Recipe

log = logging.getLogger(__name__)

T = TypeVar("T")
KNOWN_OUTPUTS = ("pm", "sc", "seg", "sr")


def _timed(timings: dict[str, float], stage: str, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    try:
        return fn()
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def synthesize(volume: Volume, model: ModelPackage, timings: dict[str, float]) -> np.ndarray:
    """Source volume -> model grid -> network -> SUV (z, y, x) back on the source grid."""
    background = CT_DEFAULT if volume.modality == "CT" else 0.0
    on_model = _timed(timings, "resample", lambda: resample_to_spacing(
        volume.image, model.spacing_mm, background))
    predicted = _timed(timings, "infer", lambda: model.predict(sitk.GetArrayFromImage(on_model)))
    out = sitk.GetImageFromArray(predicted.astype(np.float32))
    out.CopyInformation(on_model)
    back = _timed(timings, "resample", lambda: resample_onto(out, volume.image, SUV_DEFAULT))
    return sitk.GetArrayFromImage(back)


def encode_all(volume: Volume, suv: np.ndarray, labels: np.ndarray, lesions: list, out_dir: Path,
               outputs: Sequence[str], *, model_version: str, units: str) -> list[OutputFile]:
    """Encode the requested outputs; SR needs the SEG (encoded first when lesions exist)."""
    unknown = set(outputs) - set(KNOWN_OUTPUTS)
    if unknown:
        raise InputError(f"recipe asks for unknown outputs {sorted(unknown)}; known: {KNOWN_OUTPUTS}")
    written: list[OutputFile] = []
    kw = {"model_version": model_version}
    if "pm" in outputs:
        written.append(encode_pm(volume, suv, out_dir, units=units, **kw))
    if "sc" in outputs:
        written.append(encode_sc(volume, suv, labels, out_dir, units=units, **kw))
    seg_file = None
    if "seg" in outputs or ("sr" in outputs and lesions):
        seg_file = encode_seg(volume, labels, lesions, out_dir, **kw)
        if seg_file is not None:
            written.append(seg_file)
    if "sr" in outputs:
        seg = pydicom.dcmread(seg_file.path, stop_before_pixels=True) if seg_file else None
        written.append(encode_sr(volume, lesions, seg, out_dir, units=units, **kw))
    return written


def run(files: Sequence[Path], out_dir: Path, *, recipe: Recipe, model: ModelPackage | None = None,
        device: str = "cpu", preview: bool = True) -> PipelineResult:
    """Load -> check modality -> synthesize -> detect -> encode -> preview; see DESIGN.md."""
    timings: dict[str, float] = {}
    out_dir = Path(out_dir)
    volume = _timed(timings, "load", lambda: load_series([Path(f) for f in files]))
    if volume.modality != recipe.modality:
        raise InputError(f"recipe {recipe.name!r} accepts {recipe.modality}, series "
                         f"{volume.series_uid} is {volume.modality or 'without (0008,0060) Modality'}")
    if model is None:
        model = _timed(timings, "load", lambda: load_package(recipe.model, device))
    suv = synthesize(volume, model, timings)
    labels, lesions = _timed(timings, "detect", lambda: detect_lesions(
        suv, volume.image, recipe.lesion_threshold, recipe.min_lesion_volume_ml, recipe.max_lesions,
        recipe.max_lesion_volume_ml))
    outputs = _timed(timings, "encode", lambda: encode_all(
        volume, suv, labels, lesions, out_dir, recipe.outputs, model_version=model.version,
        units=model.units))
    png = None
    if preview:
        png = _timed(timings, "preview", lambda: write_preview(
            volume.array(), suv, labels, out_dir / "preview.png", modality=volume.modality))
    log.info("series %s: %d lesions, %d outputs, timings %s", volume.series_uid, len(lesions),
             len(outputs), {k: round(v, 3) for k, v in timings.items()})
    return PipelineResult(outputs=outputs, lesions=lesions, timings=timings, units=model.units,
                          model_version=model.version, preview_png=png)
