"""Model packages: a folder with `model.safetensors` (no pickle, loading runs no code) and
`manifest.json` (architecture, input modality and normalization, model grid, output units,
training data, version, metrics). The pipeline loads any package through `load_package`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import ModelError
from pipeline.models.unet2d import UNet2D

DEMO_PACKAGE = Path(__file__).parent / "packages" / "demo-ct-pet"

ARCHITECTURES = {"unet2d": UNet2D}


def build_network(architecture: dict) -> torch.nn.Module:
    """Instantiate the network named in a manifest's `architecture` section."""
    name = architecture.get("name")
    if name not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](**architecture.get("params", {}))


def normalize(volume: np.ndarray, spec: dict) -> np.ndarray:
    """Map raw input values (HU, MR intensity) to the network's input range."""
    kind = spec.get("kind")
    if kind == "ct_window":
        low, high = float(spec["low"]), float(spec["high"])
        return (np.clip(volume, low, high) - low) / (high - low) * 2.0 - 1.0
    if kind == "zscore":
        std = float(volume.std()) or 1.0
        return (volume - float(volume.mean())) / std
    raise ModelError(f"unknown normalization kind {kind!r}")


@dataclass
class ModelPackage:
    """A loaded package: its manifest and a network in eval mode on `device`."""

    path: Path
    manifest: dict
    network: torch.nn.Module
    device: str = "cpu"

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def modality(self) -> str:
        return self.manifest["input"]["modality"]

    @property
    def units(self) -> str:
        return self.manifest["output"]["units"]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Model grid spacing (x, y, z) in mm; the pipeline resamples to it and back."""
        return tuple(float(v) for v in self.manifest["input"]["spacing_mm"])

    def predict(self, volume: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Volume (z, y, x) of raw input values on the model grid -> output units, same shape."""
        x = normalize(volume.astype(np.float32), self.manifest["input"]["normalization"])
        context = int(self.manifest["architecture"]["params"].get("in_channels", 1))
        half = context // 2
        padded = np.pad(x, ((half, half), (0, 0), (0, 0)), mode="edge")
        m = getattr(self.network, "multiple", 1)
        ph, pw = (-x.shape[1]) % m, (-x.shape[2]) % m
        scale = float(self.manifest["output"].get("scale", 1.0))
        out = np.empty(x.shape, np.float32)
        use_amp = self.device.startswith("cuda")
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
            for start in range(0, x.shape[0], batch_size):
                stop = min(start + batch_size, x.shape[0])
                stack = np.stack([padded[k : k + context] for k in range(start, stop)])
                t = torch.from_numpy(stack).to(self.device)
                t = torch.nn.functional.pad(t, (0, pw, 0, ph), mode="replicate")
                y = self.network(t)[:, 0, : x.shape[1], : x.shape[2]]
                out[start:stop] = y.float().cpu().numpy() * scale
        return out


def load_package(path: Path | str | None = None, device: str = "cpu") -> ModelPackage:
    """Load a package folder (None: the shipped demonstration package)."""
    folder = Path(path) if path is not None else DEMO_PACKAGE
    manifest_path, weights_path = folder / "manifest.json", folder / "model.safetensors"
    if not manifest_path.is_file() or not weights_path.is_file():
        raise ModelError(f"model package {folder} needs manifest.json and model.safetensors")
    try:
        manifest = json.loads(manifest_path.read_text())
        network = build_network(manifest["architecture"])
        network.load_state_dict(load_file(str(weights_path)))
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ModelError(f"model package {folder} is invalid: {exc}") from exc
    network.to(device).eval()
    return ModelPackage(folder, manifest, network, device)


def save_package(out: Path, network: torch.nn.Module, manifest: dict) -> Path:
    """Write a package folder: weights as safetensors, manifest as JSON."""
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out
