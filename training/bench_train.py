"""`vpet bench train`: training throughput (images/s) of FCN-4s and pix2pix on random slices.

Why: a number to compare fp32 against bf16 autocast + channels_last on a GPU, and to size
training runs; it is a command that prints, not a timed test.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from pipeline.models.fcn import FCN4s
from pipeline.models.pix2pix import NLayerDiscriminator, UnetGenerator
from training.losses import discriminator_loss, generator_loss, pixel_loss

log = logging.getLogger(__name__)


def bench_train(network: str = "fcn", size: int = 256, batch: int = 4, steps: int = 10,
                device: str = "cpu", amp: bool = True, channels_last: bool = True,
                warmup: int = 2, net: dict | None = None) -> float:
    """Images per second over `steps` full training steps (after `warmup`); prints the figure.

    amp / channels_last apply on CUDA only, as in the trainers.
    """
    cuda = device.startswith("cuda")
    use_amp, fmt = amp and cuda, (torch.channels_last if channels_last and cuda
                                  else torch.contiguous_format)
    x = (torch.rand(batch, 1, size, size, device=device) * 2 - 1).contiguous(memory_format=fmt)
    y = (torch.rand(batch, 1, size, size, device=device) * 20).contiguous(memory_format=fmt)
    if network == "fcn":
        model = FCN4s(**(net or {})).to(device, memory_format=fmt)
        opt = torch.optim.Adam(model.parameters(), 1e-4)

        def step() -> None:
            with torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
                pred = model(x)
            loss = pixel_loss(pred, y / 20, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    elif network == "pix2pix":
        gen = UnetGenerator(**(net or {})).to(device, memory_format=fmt)
        disc = NLayerDiscriminator(2, ndf=int((net or {}).get("ngf", 64))).to(
            device, memory_format=fmt)
        opt_g = torch.optim.Adam(gen.parameters(), 2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), 2e-4, betas=(0.5, 0.999))
        real = y / 10 - 1

        def step() -> None:
            with torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
                fake = gen(x)
                loss_d = discriminator_loss(disc(torch.cat([x, real], 1)),
                                            disc(torch.cat([x, fake.detach()], 1)))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            disc.requires_grad_(False)
            with torch.autocast("cuda", torch.bfloat16, enabled=use_amp):
                d_fake = disc(torch.cat([x, fake], 1))
            loss_g, _ = generator_loss(d_fake, fake, real, y)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            disc.requires_grad_(True)
    else:
        raise ValueError(f"unknown network {network!r}; known: fcn, pix2pix")
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    rate = steps * batch / (time.perf_counter() - t0)
    mode = ("bf16 autocast" if use_amp else "fp32") + (" channels_last" if fmt is
                                                        torch.channels_last else "")
    print(f"{network} {size}x{size} batch {batch} on {device} ({mode}): {rate:.2f} images/s")
    return rate


def main(argv: list[str] | None = None) -> None:
    """`python -m training.bench_train --network fcn --size 256 --batch 4 --device cuda`."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--network", choices=("fcn", "pix2pix"), default="fcn")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--fp32", action="store_true", help="no autocast, no channels_last")
    a = p.parse_args(argv)
    bench_train(a.network, a.size, a.batch, a.steps, a.device, amp=not a.fp32,
                channels_last=not a.fp32)


if __name__ == "__main__":
    main()
