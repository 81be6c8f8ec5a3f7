"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

Why: the product never unpickles (loading must not run code), and a resumed run must continue
exactly: networks, Adam moments, the sampler's random generator, epoch and loss history.
Files are written under temporary names and renamed, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

log = logging.getLogger(__name__)

TENSORS, META = "checkpoint.safetensors", "checkpoint.json"


def _flatten_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict) -> dict:
    state = opt.state_dict()
    for idx, entries in state["state"].items():
        for key, value in entries.items():
            # .contiguous(): Adam's moments keep a channels_last parameter's layout on CUDA,
            # and safetensors stores only contiguous tensors
            tensors[f"{name}.state.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return {"param_groups": state["param_groups"], "ids": sorted(state["state"])}


def save_checkpoint(folder: Path, modules: dict[str, nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer], meta: dict,
                    generator: torch.Generator | None = None) -> None:
    """Write `checkpoint.safetensors` + `checkpoint.json` into `folder` atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
    opt_meta = {n: _flatten_optimizer(n, o, tensors) for n, o in optimizers.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    if generator is not None:
        tensors["rng.sampler"] = generator.get_state()
    tmp_t, tmp_m = folder / (TENSORS + ".tmp"), folder / (META + ".tmp")
    save_file(tensors, str(tmp_t))
    tmp_m.write_text(json.dumps({**meta, "optimizers": opt_meta}, indent=1) + "\n")
    os.replace(tmp_t, folder / TENSORS)
    os.replace(tmp_m, folder / META)


def load_checkpoint(folder: Path, modules: dict[str, nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer],
                    generator: torch.Generator | None = None) -> dict | None:
    """Restore in place; returns the saved meta (epoch, history, ...) or None without one."""
    if not (folder / TENSORS).is_file() or not (folder / META).is_file():
        return None
    tensors = load_file(str(folder / TENSORS))
    meta = json.loads((folder / META).read_text())
    for name, module in modules.items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                if k.startswith(prefix)})
    for name, opt in optimizers.items():
        saved = meta["optimizers"][name]
        state: dict[int, dict] = {}
        for idx in saved["ids"]:
            prefix = f"{name}.state.{idx}."
            state[int(idx)] = {k[len(prefix):]: v for k, v in tensors.items()
                               if k.startswith(prefix)}
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g
                  for g in saved["param_groups"]]
        opt.load_state_dict({"state": state, "param_groups": groups})
    torch.set_rng_state(tensors["rng.torch"])
    if generator is not None and "rng.sampler" in tensors:
        generator.set_state(tensors["rng.sampler"])
    log.info("resumed from %s at epoch %s", folder, meta.get("epoch"))
    return meta
