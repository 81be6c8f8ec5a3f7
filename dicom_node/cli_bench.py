"""`vpet bench receive` command body (registered in cli.py); the work is in bench_receive."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def receive(
    shape: Annotated[str, typer.Option(help="CT size as SLICES,ROWS,COLUMNS.")] = "300,512,512",
    stream: Annotated[int, typer.Option(help="Tiny instances streamed to the node to measure "
                                              "its peak memory (0 = skip).")] = 1000,
    orthanc: Annotated[bool, typer.Option(help="Also measure Orthanc.")] = True,
    storescp: Annotated[bool, typer.Option(help="Also measure DCMTK storescp.")] = True,
    work: Annotated[Path | None, typer.Option(help="Scratch folder (default: system temp).")]
    = None,
    repeat: Annotated[int, typer.Option(help="Interleaved rounds; medians are reported.")] = 3,
) -> None:
    """Receive throughput: DCMTK storescu -> node, storescp and Orthanc; prints the ratios."""
    from dicom_node.bench_receive import report, run_bench

    try:
        z, y, x = (int(v) for v in shape.split(","))
    except ValueError:
        raise typer.BadParameter(f"--shape wants SLICES,ROWS,COLUMNS, got {shape!r}") from None
    data = run_bench((z, y, x), stream, work, orthanc=orthanc, storescp=storescp,
                     repeat=repeat)
    typer.echo(report(data))
