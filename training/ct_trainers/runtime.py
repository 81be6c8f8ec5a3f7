"""Device, DDP, AMP and learning-rate helpers shared by the CT trainers.

Why: AMP (bf16 autocast) and channels_last only pay off on CUDA and must stay off on CPU; DDP
starts only under `torchrun` (WORLD_SIZE > 1); the pix2pix schedule (constant, then linear decay
to 0) is set per epoch so a resumed run lands on the same rate.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    device: str
    rank: int = 0
    world: int = 1

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str, seed: int, threads: int | None = None) -> Runtime:
    """Seed everything; join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if threads:
        torch.set_num_threads(threads)
    if world > 1:
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.startswith("cuda"):
            device = f"cuda:{local}"
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        log.info("DDP rank %d/%d on %s", rank, world, device)
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)
    return Runtime(device, rank, world)


def leave_process_group(world: int) -> None:
    """Leave the process group when every rank is done (rank 0 after writing the package);
    the CT and GANBERT trainers both end with it. Why: a process that exits with gloo's
    threads still running can die in std::terminate, and torchrun then fails the whole run."""
    if world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def prepare(net: nn.Module, rt: Runtime) -> nn.Module:
    """Move to the device (channels_last on CUDA); wrap in DDP when distributed."""
    net.to(rt.device)
    if rt.cuda:
        net.to(memory_format=torch.channels_last)
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(net, device_ids=[torch.device(rt.device).index] if rt.cuda else None)
    return net


def unwrap(net: nn.Module) -> nn.Module:
    return net.module if hasattr(net, "module") else net


def to_device(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    t = t.to(rt.device, non_blocking=True)
    return t.contiguous(memory_format=torch.channels_last) if rt.cuda and t.dim() == 4 else t


@contextlib.contextmanager
def autocast(rt: Runtime, enabled: bool = True) -> Iterator[None]:
    """bf16 autocast on CUDA only (no GradScaler needed for bf16); a no-op on CPU."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled and rt.cuda):
        yield


def lr_factor(epoch: int, epochs: int, decay_epochs: int) -> float:
    """pix2pix 'linear' policy: 1.0 for epochs - decay_epochs epochs, then linearly towards 0."""
    constant = epochs - decay_epochs
    return 1.0 - max(0, epoch - constant) / float(decay_epochs + 1)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Every group at `lr` times its own `lr_scale` (see `param_groups`)."""
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def param_groups(model: nn.Module, input_lr_factor: float = 1.0) -> list[dict]:
    """Optimizer groups: the first convolution learns `input_lr_factor` times faster than the
    rest. Why: after `--init` widens the input (more slices, more CT windows) the new kernels
    start at zero beside trained ones, and at a fine-tuning lr Adam moves them too slowly for
    the network to learn what they add; a faster first layer is the usual remedy for a new
    layer in a trained network. Factor 1: one group, as before (old checkpoints resume)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if input_lr_factor == 1.0:
        return [{"params": params}]
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv3d))
    fast = {id(p) for p in first.parameters()}
    return [{"params": [p for p in params if id(p) not in fast]},
            {"params": [p for p in params if id(p) in fast], "lr_scale": input_lr_factor}]


def all_mean(value: float, rt: Runtime) -> float:
    """Average a scalar over ranks (for logging the same loss everywhere)."""
    if not rt.distributed:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], device=rt.device)
    dist.all_reduce(t)
    return float(t) / rt.world
