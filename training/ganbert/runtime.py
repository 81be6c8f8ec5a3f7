"""Training plumbing shared by the GANBERT and pix2pix-3D trainers.

Why: warm-up schedule, seeds, DDP set-up, resumable checkpoints and package export are the same
for both methods; keeping them here leaves the trainer a readable loop.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_linear(total_steps: int, warmup: float = 0.05):
    """LambdaLR factor: linear warm-up over `warmup` of the steps, then linear decay (BERT)."""
    warm = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return factor


def init_distributed(device: str) -> tuple[int, int]:
    """(rank, world size); starts a process group when launched by torchrun with WORLD_SIZE>1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), world


def wrap_ddp(module: nn.Module, device: str, world: int) -> nn.Module:
    if world <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index or 0] if device.startswith("cuda") else None
    return DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)


def save_checkpoint(path: Path, step: int, modules: dict[str, nn.Module],
                    optimizers: dict, schedulers: dict, history: dict) -> None:
    """Everything needed to resume; written to a temp file then renamed (no torn files)."""
    state = {"step": step, "history": history,
             "modules": {k: unwrap(m).state_dict() for k, m in modules.items()},
             "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
             "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
             "torch_rng": torch.get_rng_state()}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, modules: dict[str, nn.Module], optimizers: dict,
                    schedulers: dict) -> tuple[int, dict]:
    """Restore in place; returns (step, history). Loads tensors only (weights_only)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for k, m in modules.items():
        unwrap(m).load_state_dict(state["modules"][k])
    for k, o in optimizers.items():
        o.load_state_dict(state["optimizers"][k])
    for k, s in schedulers.items():
        s.load_state_dict(state["schedulers"][k])
    torch.set_rng_state(state["torch_rng"])
    log.info("resumed from %s at step %d", path, state["step"])
    return int(state["step"]), state["history"]
