"""Plain data types shared by `pipeline`, `dicom_node` and `training` (the contract between them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Recipe:
    """What to run on a series: which model, in which units, with which detection settings."""

    name: str  # e.g. "ct-to-pet", "mr-to-pet"
    modality: str  # input modality the recipe accepts: "CT" or "MR"
    model: Path | None = None  # model package folder; None = the shipped demo package
    units: str = "SUVbw"  # "SUVbw" for CT input, "SUVR" for MR input
    lesion_threshold: float = 2.5  # SUV (or SUVR) above which voxels are "hot"
    min_lesion_volume_ml: float = 0.1
    # Larger hot regions are organs with physiological uptake (kidneys, bladder, brain), not
    # lesions: a 30 mm lesion is 14 ml, a kidney 120-200 ml.
    max_lesion_volume_ml: float = 100.0
    max_lesions: int = 50
    outputs: tuple[str, ...] = ("pm", "sc", "sc_grey", "seg", "sr")
    # SUVR recipes: a label image in patient (LPS) coordinates, any SimpleITK format
    # (.nii.gz, .nrrd, .mha), whose voxels == reference_label are the reference region (e.g.
    # cerebellar grey matter for amyloid); the synthetic PET is divided by its mean. None = off.
    reference_region: Path | None = None
    reference_label: int = 1
    # Optional organ mask (same kind of file, nonzero = search here) restricting lesion detection.
    organ_mask: Path | None = None


@dataclass(frozen=True)
class Lesion:
    """One detected hot region, measured on the source grid."""

    index: int  # 1-based, equals the SEG segment number
    suv_max: float
    suv_mean: float
    volume_ml: float
    voxel_count: int
    centroid_mm: tuple[float, float, float]  # patient coordinates (LPS)
    suv_peak: float = float("nan")  # mean in the 1 ml sphere placed to maximize it (PERCIST)
    tlg: float = float("nan")  # total lesion glycolysis: SUVmean x volume (ml)


@dataclass(frozen=True)
class OutputFile:
    """One DICOM instance written by the pipeline, ready to be sent."""

    path: Path
    kind: str  # "pm" | "sc" | "sc_grey" | "seg" | "sr"
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str


@dataclass
class PipelineResult:
    """Everything `pipeline.run` produced, plus seconds per stage for reporting."""

    outputs: list[OutputFile]
    lesions: list[Lesion]
    timings: dict[str, float] = field(default_factory=dict)
    units: str = "SUVbw"
    model_version: str = ""
    preview_png: Path | None = None
