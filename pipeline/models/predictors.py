"""How each kind of network turns a raw volume on the model grid into output units.

Why separate: a 2.5-D slice network, a 3-D volume network and a blended pair of networks need
different loops, but the pipeline only ever calls `ModelPackage.predict(volume)`.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.errors import ModelError


def normalize(volume: np.ndarray, spec: dict) -> np.ndarray:
    """Map raw input values (HU, MR intensity) to the network's input range."""
    kind = spec.get("kind")
    if kind == "ct_window":
        low, high = float(spec["low"]), float(spec["high"])
        return (np.clip(volume, low, high) - low) / (high - low) * 2.0 - 1.0
    if kind in ("zscore", "mr_zscore_paper"):
        std = float(volume.std()) or 1.0
        return (volume - float(volume.mean())) / std
    raise ModelError(f"unknown normalization kind {kind!r}")


FLIPS = ((), (-1,), (-2,), (-2, -1))  # identity, left-right, up-down, both (in-plane)


def predict_slices(network: torch.nn.Module, x: np.ndarray, *, context: int, scale: float,
                   device: str, batch_size: int = 16, flip_tta: bool = False) -> np.ndarray:
    """2.5-D inference: `context` adjacent normalized slices in, one output slice out.

    `flip_tta`: the mean of the predictions of the four in-plane flips of each slice. Why: a
    slice network's answer on a faint structure wobbles with the CT noise pattern it happens
    to see; the flips show it the same anatomy with other noise-to-filter alignments, and the
    mean keeps what all four agree on (small false hot specks fade, lesions stay)."""
    half = context // 2
    padded = np.pad(x, ((half, half), (0, 0), (0, 0)), mode="edge")
    m = int(getattr(network, "multiple", 1))
    ph, pw = (-x.shape[1]) % m, (-x.shape[2]) % m
    out = np.empty(x.shape, np.float32)
    flips = FLIPS if flip_tta else FLIPS[:1]
    use_amp = device.startswith("cuda")
    with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
        for start in range(0, x.shape[0], batch_size):
            stop = min(start + batch_size, x.shape[0])
            stack = np.stack([padded[k : k + context] for k in range(start, stop)])
            t = torch.from_numpy(np.ascontiguousarray(stack, np.float32)).to(device)
            t = torch.nn.functional.pad(t, (0, pw, 0, ph), mode="replicate")
            t = t.contiguous(memory_format=torch.channels_last)  # as load_package's weights
            y = sum(_flipped(network, t, dims) for dims in flips) / len(flips)
            out[start:stop] = y[:, 0, : x.shape[1], : x.shape[2]].float().cpu().numpy() * scale
    return out


def _flipped(network: torch.nn.Module, t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """The network's output for `t` flipped along `dims`, flipped back onto `t`'s pixels."""
    if not dims:
        return network(t).float()
    return network(t.flip(dims)).float().flip(dims)


def predict_members(networks: torch.nn.ModuleDict, volume: np.ndarray, manifest: dict,
                    device: str) -> dict[str, np.ndarray]:
    """{"fcn", "cgan"}: each member of a blended package alone, in SUV (run once each)."""
    arch = manifest["architecture"]
    x = normalize(volume.astype(np.float32), manifest["input"]["normalization"])
    outputs = {}
    for name in ("fcn", "cgan"):
        member = arch["members"][name]
        outputs[name] = predict_slices(
            networks[name], x, context=int(member["params"].get("in_channels", 1)),
            scale=float(member.get("scale", 1.0)), device=device,
            flip_tta=bool(member.get("flip_tta", False)))
    return outputs


def blend_members(outputs: dict[str, np.ndarray], manifest: dict) -> np.ndarray:
    """Seed paper 000: FCN and cGAN outputs blended by a Laplacian pyramid where FCN > 2.5."""
    from pipeline.blend import blend

    arch = manifest["architecture"]
    return blend(outputs["fcn"], outputs["cgan"], threshold=float(arch.get("threshold", 2.5)),
                 levels=int(arch.get("levels", 4)), dilate=int(arch.get("dilate", 0)),
                 hot_mask=str(arch.get("hot_mask", "fcn")))


def predict_blend(networks: torch.nn.ModuleDict, volume: np.ndarray, manifest: dict,
                  device: str) -> np.ndarray:
    """The blended virtual PET of a blended package."""
    return blend_members(predict_members(networks, volume, manifest, device), manifest)


def predict_volume(network: torch.nn.Module, volume: np.ndarray, manifest: dict,
                   device: str) -> np.ndarray:
    """3-D MR -> PET (seed paper 003): (T, z, y, x) time-steps; returns the reported one."""
    from pipeline.models.unet3d import predict_mr_to_pet

    steps = predict_mr_to_pet(network, volume, device)
    return steps[int(manifest["output"].get("time_step", -1))]
