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
from pipeline.encode.sc_grey import encode_sc_grey
from pipeline.encode.seg import encode_seg
from pipeline.encode.sr import encode_sr
from pipeline.errors import InputError, ModelError
from pipeline.lesions import detect_lesions
from pipeline.models.package import ModelPackage, default_package, load_package
from pipeline.preview import write_preview
from pipeline.resample import CT_DEFAULT, SUV_DEFAULT, resample_onto, resample_to_spacing
from pipeline.series import Volume, load_series
from pipeline.suvr import label_on_grid, to_suvr
from pipeline.types import Lesion, OutputFile, PipelineResult, Recipe

log = logging.getLogger(__name__)

T = TypeVar("T")
KNOWN_OUTPUTS = ("pm", "sc", "sc_grey", "seg", "sr")


def _timed(timings: dict[str, float], stage: str, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    try:
        return fn()
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def synthesize(volume: Volume, model: ModelPackage, timings: dict[str, float]) -> np.ndarray:
    """Working volume -> model grid -> network -> SUV (z, y, x) back on the working grid."""
    background = CT_DEFAULT if volume.modality == "CT" else 0.0
    on_model = _timed(timings, "resample", lambda: resample_to_spacing(
        volume.image, model.spacing_mm, background, antialiased=model.antialias))
    predicted = _timed(timings, "infer",
                       lambda: model.predict(sitk.GetArrayViewFromImage(on_model)))
    out = sitk.GetImageFromArray(np.asarray(predicted, np.float32))
    del predicted
    out.CopyInformation(on_model)
    on_model = None  # free the model-grid input before resampling back
    back = _timed(timings, "resample", lambda: resample_onto(out, volume.image, SUV_DEFAULT))
    return sitk.GetArrayFromImage(back)


def _masks(volume: Volume, recipe: Recipe, suv: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply the recipe's SUVR reference region; return (values, organ mask or None)."""
    if recipe.reference_region is not None:
        suv = to_suvr(suv, label_on_grid(recipe.reference_region, volume.image),
                      recipe.reference_label)
    organ = None
    if recipe.organ_mask is not None:
        organ = label_on_grid(recipe.organ_mask, volume.image) != 0
    return suv, organ


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
    if "sc_grey" in outputs:
        written.append(encode_sc_grey(volume, suv, out_dir, units=units, **kw))
    seg_file = None
    if "seg" in outputs or ("sr" in outputs and lesions):
        seg_file = encode_seg(volume, labels, lesions, out_dir, **kw)
        if seg_file is not None:
            written.append(seg_file)
    if "sr" in outputs:
        seg = pydicom.dcmread(seg_file.path, stop_before_pixels=True) if seg_file else None
        written.append(encode_sr(volume, lesions, seg, out_dir, units=units, **kw))
    return written


def detect_and_encode(volume: Volume, suv: np.ndarray, recipe: Recipe, out_dir: Path,
                      timings: dict[str, float], *, model_version: str, units: str
                      ) -> tuple[list[OutputFile], list[Lesion], np.ndarray, np.ndarray]:
    """SUV on the working grid -> lesions (working grid) -> outputs on the source frames.

    Returns the outputs, the lesions, and SUV and labels on the source frames.
    """
    suv, organ = _timed(timings, "detect", lambda: _masks(volume, recipe, suv))
    labels, lesions = _timed(timings, "detect", lambda: detect_lesions(
        suv, volume.image, recipe.lesion_threshold, recipe.min_lesion_volume_ml, recipe.max_lesions,
        recipe.max_lesion_volume_ml, organ_mask=organ))
    # Detection ran on the uniform working grid; outputs go onto the source frame positions.
    suv, labels = volume.to_source(suv), volume.to_source(labels, nearest=True)
    outputs = _timed(timings, "encode", lambda: encode_all(
        volume, suv, labels, lesions, out_dir, recipe.outputs, model_version=model_version,
        units=units))
    return outputs, lesions, suv, labels


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
        model = _timed(timings, "load", lambda: load_package(
            recipe.model or default_package(recipe.modality), device))
    if model.modality != volume.modality:
        raise ModelError(f"model {model.name!r} takes {model.modality} input, series "
                         f"{volume.series_uid} is {volume.modality}")
    suv = synthesize(volume, model, timings)
    units = "SUVR" if recipe.reference_region is not None else model.units
    outputs, lesions, suv, labels = detect_and_encode(volume, suv, recipe, out_dir, timings,
                                                      model_version=model.version, units=units)
    png = None
    if preview:
        png = _timed(timings, "preview", lambda: write_preview(
            volume.source_array(), suv, labels, out_dir / "preview.png", modality=volume.modality))
    log.info("series %s: %d lesions, %d outputs, timings %s", volume.series_uid, len(lesions),
             len(outputs), {k: round(v, 3) for k, v in timings.items()})
    return PipelineResult(outputs=outputs, lesions=lesions, timings=timings, units=units,
                          model_version=model.version, preview_png=png)
