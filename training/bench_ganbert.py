"""`vpet bench train ganbert`: optimizer steps per second and peak memory of GANBERT training.

Why: the paper trains on 256^3 MR with BERT-base on GPUs; whether a site can train (and at what
size) depends on these two numbers, so they are measured with the real training step (D then G
losses, accumulation) on random volumes of the requested size.
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from training.ganbert import runtime as R
from training.ganbert.trainer import TrainConfig, _micro_step, _models

log = logging.getLogger(__name__)


@dataclass
class BenchResult:
    size: int
    steps: int
    accum: int
    seconds: float
    steps_per_s: float
    peak_rss_mib: float
    peak_cuda_mib: float | None
    device: str
    bert: str
    base: int
    depth: int

    def lines(self) -> list[str]:
        cuda = (f"{self.peak_cuda_mib:.0f} MiB" if self.peak_cuda_mib is not None
                else "n/a (CPU)")
        return [(f"GANBERT training, input {self.size}^3, device {self.device}, BERT {self.bert}, "
                f"U-Net base {self.base} depth {self.depth}, accumulation x{self.accum}"),
                (f"optimizer steps: {self.steps} in {self.seconds:.2f} s = "
                f"{self.steps_per_s:.4f} steps/s"),
                f"peak host memory (ru_maxrss): {self.peak_rss_mib:.0f} MiB",
                f"peak GPU memory (max_memory_allocated): {cuda}"]


def bench_train(size: int = 128, steps: int = 2, *, device: str = "cpu", bert: str = "base",
                base: int = 16, depth: int = 4, accum: int = 2, method: str = "ganbert",
                checkpointing: bool = True) -> BenchResult:
    """One warm-up step, then `steps` timed optimizer steps on (1, 1, size^3) random MR."""
    cfg = TrainConfig(out=Path("."), method=method, base=base, depth=depth, bert=bert,
                      batch_size=1, accum=accum, checkpointing=checkpointing, device=device,
                      progress=False)
    R.seed_everything(0)
    mods = {k: m.to(device) for k, m in _models(cfg, 2).items()}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in mods.items()}
    mr = torch.randn(1, 1, size, size, size, device=device)
    pet = torch.randn(1, 2, size, size, size, device=device) * 0.1
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        for _ in range(accum):
            _micro_step(cfg, mods, mr, pet, gen)
        for o in opts.values():
            o.step()
            o.zero_grad(set_to_none=True)

    step()  # warm-up: allocator, kernels, autotuning
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    cuda = (torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda") else None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return BenchResult(size, steps, accum, round(seconds, 3), steps / seconds, rss, cuda,
                       device, bert, base, depth)
