"""`vpet bench pipeline`: seconds per pipeline stage and peak memory on a phantom CT.

Why: the targets (whole pipeline < 60 s and < 4 GB resident on 2 CPU cores; < 5 s and < 8 GB
GPU memory on one H200) are checked by a command that prints numbers, not by a timed test.
The CT is a synthetic abdomen written as real DICOM (training.phantoms, imported lazily so
the node does not need training code to start); the stages are those `pipeline.run` times.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

STAGES = ("load", "resample", "infer", "blend", "detect", "encode", "preview")


@dataclass
class PipelineBench:
    """What one benchmark run measured."""

    shape: tuple[int, int, int]
    device: str
    timings: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0
    peak_rss_mb: float = 0.0
    peak_gpu_mb: float | None = None
    lesions: int = 0
    outputs: int = 0

    def lines(self) -> list[str]:
        z, y, x = self.shape
        out = [(f"pipeline on a {x}x{y}x{z} CT ({self.device}): {self.outputs} outputs, "
                f"{self.lesions} lesions")]
        for stage in STAGES:
            if stage in self.timings:
                out.append(f"  {stage:<9} {self.timings[stage]:7.2f} s")
        if "blend" not in self.timings:
            out.append("  blend     (inside infer: the package blends in its predictor)")
        out.append(f"  total     {self.total_s:7.2f} s")
        out.append(f"  peak RSS  {self.peak_rss_mb:7.0f} MB")
        if self.peak_gpu_mb is not None:
            out.append(f"  peak GPU  {self.peak_gpu_mb:7.0f} MB (torch.cuda.max_memory_allocated)")
        return out


def _peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / 2**20  # KiB on Linux


def _write_ct(out: Path, shape: tuple[int, int, int]) -> None:
    from training.phantoms.abdomen import make_ct_only

    make_ct_only(out, seed=7, ct_shape=shape)


def bench_pipeline(shape: tuple[int, int, int] = (300, 512, 512), device: str = "cpu",
                   work: Path | None = None, model: Path | None = None,
                   preview: bool = True) -> PipelineBench:
    """Write the phantom CT (not timed), run `pipeline.run` once, collect timings and memory."""
    from pipeline.models.package import load_package
    from pipeline.runner import run
    from pipeline.types import Recipe

    with tempfile.TemporaryDirectory(dir=work) as tmp:
        # A child process writes the phantom, so its memory does not count in the peak RSS.
        child = multiprocessing.get_context("spawn").Process(
            target=_write_ct, args=(Path(tmp) / "case", shape))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"phantom writer failed with exit code {child.exitcode}")
        ct_paths = sorted((Path(tmp) / "case" / "CT").glob("*.dcm"))
        package = load_package(model, device)  # model loading is start-up, not per series
        import torch

        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = run(ct_paths, Path(tmp) / "out", recipe=Recipe(name="ct-to-pet", modality="CT"),
                     model=package, device=device, preview=preview)
        total = time.perf_counter() - start
        gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    return PipelineBench(shape=shape, device=device, timings=dict(result.timings), total_s=total,
                         peak_rss_mb=_peak_rss_mb(), peak_gpu_mb=gpu, lesions=len(result.lesions),
                         outputs=len(result.outputs))
