"""Start a CT trainer from the weights of an existing model package (fine-tuning).

Why: training the paper's networks from scratch takes hours even on a GPU; a site that has its
own PET/CT pairs, or a new training recipe (another model grid, another resampling), should be
able to continue from the shipped package instead. A blended package holds both networks
(`fcn.*`, `cgan.*`); the member of the trainer's architecture is taken. The architecture and its
parameters must match exactly (a different width cannot be loaded, and silently training a
different network than the manifest says would be worse than failing).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from pipeline.errors import ModelError
from pipeline.models.package import BLEND

log = logging.getLogger(__name__)

MEMBER_OF = {"fcn4s": "fcn", "pix2pix_unet": "cgan"}
TRAINING_ONLY = {"dropout"}  # parameters that change training, not the weights' shapes


def init_from_package(network: nn.Module, arch: str, params: dict, package: Path) -> None:
    """Copy the `arch` weights of `package` into `network`; ModelError when they do not fit."""
    try:
        source = json.loads((Path(package) / "manifest.json").read_text())["architecture"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{package} is not a model package (manifest.json: {exc})") from None
    prefix = ""
    if source.get("name") == BLEND:
        member = MEMBER_OF.get(arch)
        if member not in source.get("members", {}):
            raise ModelError(f"{package} is a blend without a member for {arch}")
        source, prefix = source["members"][member], f"{member}."
    if source.get("name") != arch:
        raise ModelError(f"{package} holds {source.get('name')}, not {arch}")
    theirs = {k: v for k, v in source.get("params", {}).items() if k not in TRAINING_ONLY}
    ours = {k: v for k, v in params.items() if k not in TRAINING_ONLY}
    if theirs != ours:
        raise ModelError(f"{package} {arch} parameters {theirs} differ from this run's {ours}")
    weights = load_file(str(Path(package) / "model.safetensors"))
    state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    target = network.state_dict()
    network.load_state_dict({k: v.to(target[k].dtype) for k, v in state.items()})
    log.info("initialized %s from %s (%d tensors)", arch, package, len(state))
