"""Start a CT trainer from the weights of an existing model package (fine-tuning).

Why: training the paper's networks from scratch takes hours even on a GPU; a site that has its
own PET/CT pairs, or a new training recipe (another model grid, another resampling), should be
able to continue from the shipped package instead. A blended package holds both networks
(`fcn.*`, `cgan.*`); the member of the trainer's architecture is taken. The architecture and its
parameters must match exactly (a different width cannot be loaded, and silently training a
different network than the manifest says would be worse than failing), with one exception: more
adjacent CT slices (`in_channels`, the z context) than the source had. The first convolution is
then inflated: the source's kernels sit on the centre slices and the new outer slices start at
zero, so the run starts as exactly the source network and learns what the extra slices add
(a tube through 7 slices is not a sphere; 3 slices cannot tell them apart). Likewise more CT
windows (`extra_windows`, pipeline/models/windows.py) than the source had: the new windows'
kernels start at zero.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from pipeline.errors import ModelError
from pipeline.models.package import BLEND
from pipeline.models.windows import CT_INPUT_WINDOW_HU

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
    source_in, our_in = int(theirs.pop("in_channels", 1)), int(ours.pop("in_channels", 1))
    (source_base, source_extra), (our_base, our_extra) = _windows(theirs), _windows(ours)
    if (theirs != ours or our_in < source_in or (our_in - source_in) % 2
            or source_base != our_base or our_extra[:len(source_extra)] != source_extra):
        raise ModelError(f"{package} {arch} parameters {source.get('params', {})} differ from "
                         f"this run's {params} (only more context slices, by an even number, "
                         "and more CT windows after the source's can be taken over)")
    weights = load_file(str(Path(package) / "model.safetensors"))
    state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    target = network.state_dict()
    blocks = (1 + len(source_extra), 1 + len(our_extra))
    loaded = {k: _fit_input(k, v, target[k], source_in, our_in, blocks) if k in target else v
              for k, v in state.items()}  # an unknown key: load_state_dict names it
    network.load_state_dict(loaded)
    log.info("initialized %s from %s (%d tensors; %d -> %d input slices, %d -> %d CT windows)",
             arch, package, len(state), source_in, our_in, *blocks)


def _windows(params: dict) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """Pop the input window and the extra CT windows of `params` (defaults when absent)."""
    base = params.pop("input_window", None) or CT_INPUT_WINDOW_HU
    extra = params.pop("extra_windows", None) or []
    return (float(base[0]), float(base[1])), [(float(lo), float(hi)) for lo, hi in extra]


def _fit_input(key: str, weight, target, source_in: int, our_in: int,
               blocks: tuple[int, int] = (1, 1)):
    """The source tensor in `target`'s dtype. A first-layer kernel over `source_in` slices
    per window (`blocks[0]` windows) is zero-padded on both sides to `our_in` slices (the centre
    slice stays the centre), and the windows the source lacks (`blocks[1]`) get zeros."""
    weight = weight.to(target.dtype)
    if weight.shape == target.shape:
        return weight
    pad = (our_in - source_in) // 2
    if (weight.ndim < 2 or weight.shape[1] != source_in * blocks[0]
            or target.shape[1] != our_in * blocks[1]
            or weight.shape[:1] + weight.shape[2:] != target.shape[:1] + target.shape[2:]):
        raise ModelError(f"{key}: {tuple(weight.shape)} does not fit {tuple(target.shape)}")
    inflated = target.new_zeros(target.shape)
    for b in range(blocks[0]):
        start = b * our_in + pad
        inflated[:, start:start + source_in] = weight[:, b * source_in:(b + 1) * source_in]
    return inflated
