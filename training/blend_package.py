"""Combine a trained FCN-4s package and a pix2pix package into one blended package (paper 000).

Why: the two networks are trained separately (different losses, optimizers, schedules), but the
node must load one package; the blended package holds both members' weights in one safetensors
file (an nn.ModuleDict with keys "fcn." / "cgan.") and blends their outputs with a Laplacian
pyramid where the FCN says > `threshold` SUV (that mask grown by `dilate` voxels; 0 = paper;
`hot_mask` "fcn_or_cgan" or "fcn_veto_cgan" lets the FCN veto cGAN-only hot spots,
"fcn_and_cgan" each network veto the other's, see pipeline.blend).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline.blend import HOT_MASKS
from pipeline.errors import ModelError
from pipeline.models.package import BLEND, load_package, save_package

log = logging.getLogger(__name__)

MEMBER_ARCH = {"fcn": "fcn4s", "cgan": "pix2pix_unet"}


def _member(manifest: dict, flip_tta: bool = False) -> dict:
    arch = manifest["architecture"]
    return {"name": arch["name"], "params": arch.get("params", {}),
            "scale": float(manifest["output"].get("scale", 1.0)), "flip_tta": flip_tta}


def blend_manifest(fcn: dict, cgan: dict, *, name: str, version: str, threshold: float,
                   levels: int, description: str | None = None, dilate: int = 0,
                   hot_mask: str = "fcn", flip_tta: Sequence[str] = ()) -> dict:
    """Manifest of the blended package; input/output sections come from the FCN member;
    `flip_tta` names the members whose prediction is the mean over in-plane flips."""
    if fcn["input"] != cgan["input"]:
        raise ModelError("FCN and cGAN packages differ in input (modality, normalization or "
                         f"grid): {fcn['input']} vs {cgan['input']}")
    if fcn["output"]["units"] != cgan["output"]["units"]:
        raise ModelError("FCN and cGAN packages differ in output units")
    return {
        "name": name,
        "version": version,
        "description": description or (
            "CT -> virtual PET (SUVbw) of seed paper 000: FCN-4s and pix2pix cGAN blended by a "
            "Laplacian pyramid where FCN > threshold. Research use only: synthetic picture, "
            "not a measurement."),
        "architecture": {"name": BLEND, "members": {"fcn": _member(fcn, "fcn" in flip_tta),
                                                    "cgan": _member(cgan, "cgan" in flip_tta)},
                         "threshold": threshold, "levels": levels, "dilate": dilate,
                         "hot_mask": hot_mask},
        "input": fcn["input"],
        "output": {"units": fcn["output"]["units"], "scale": 1.0,
                   "mapping": "blend of the members' SUV outputs (each member has its scale)"},
        "training": {"fcn": fcn.get("training", {}), "cgan": cgan.get("training", {})},
        "metrics": {"fcn": fcn.get("metrics", {}), "cgan": cgan.get("metrics", {})},
    }


def make_blend_package(fcn_dir: Path, cgan_dir: Path, out: Path, *, name: str = "ct-pet-blend",
                       version: str = "0.1.0", threshold: float = 2.5, levels: int = 4,
                       description: str | None = None, dilate: int = 0,
                       hot_mask: str = "fcn", flip_tta: Sequence[str] = ()) -> Path:
    """Write the blended package to `out` from two member packages; returns `out`."""
    if hot_mask not in HOT_MASKS:
        raise ModelError(f"unknown hot mask {hot_mask!r}; known: {', '.join(HOT_MASKS)}")
    if unknown := set(flip_tta) - set(MEMBER_ARCH):
        raise ModelError(f"unknown flip TTA member(s) {sorted(unknown)}; known: fcn, cgan")
    fcn, cgan = load_package(fcn_dir), load_package(cgan_dir)
    for key, pkg in (("fcn", fcn), ("cgan", cgan)):
        got = pkg.manifest["architecture"]["name"]
        if got != MEMBER_ARCH[key]:
            raise ModelError(f"--{key} package {pkg.path} is {got!r}, expected "
                             f"{MEMBER_ARCH[key]!r}")
    manifest = blend_manifest(fcn.manifest, cgan.manifest, name=name, version=version,
                              threshold=threshold, levels=levels, description=description,
                              dilate=dilate, hot_mask=hot_mask, flip_tta=flip_tta)
    network = torch.nn.ModuleDict({"fcn": fcn.network, "cgan": cgan.network})
    save_package(Path(out), network, manifest)
    load_package(out)  # refuse to leave a package the node cannot load
    log.info("wrote blended package %s (fcn %s, cgan %s)", out, fcn_dir, cgan_dir)
    return Path(out)
