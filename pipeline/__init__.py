"""Pure image work: DICOM series -> volume -> resample -> synthesize -> detect -> encode.

Imports neither `dicom_node` nor `training`; touches no network and no database.
"""

from pipeline.types import Lesion, OutputFile, PipelineResult, Recipe

__all__ = ["Lesion", "OutputFile", "PipelineResult", "Recipe", "run"]


def run(*args, **kwargs) -> PipelineResult:
    """`pipeline.runner.run`, imported on first use so `import pipeline` stays cheap (no torch)."""
    from pipeline.runner import run as _run

    return _run(*args, **kwargs)
