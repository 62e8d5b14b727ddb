"""Latency of latent inversion vs the reconstruction baseline (paper 001, Table 4).

Real-run sizes: EfficientNet-B4 stages 0-3 (272 x 16 x 16 features of a 256
input) and the kind's default UNet. Weights are random: latency does not
depend on them, and the hub is unreachable here. Prints ms per image for the
backbone and for the diffusion part of each setting, on the CPU and, when
present, on CUDA with mixed precision.

    python benchmarks/bench_latent_inversion.py [--batch 8 --repeats 3]
"""

from __future__ import annotations

import argparse

import timm
import torch
from timing import timed

from diffad.device import autocast
from diffad.methods.latent_inversion import LatentInversionParams
from diffad.methods.latent_inversion.model import build_unet
from diffad.models.ddim import inversion_path, run_ddim, step_grid


def bench(device: torch.device, batch: int, repeats: int) -> None:
    params = LatentInversionParams()
    backbone = timm.create_model(params.backbone, pretrained=False, features_only=True,
                                 out_indices=params.stages).to(device).eval()
    channels = sum(backbone.feature_info.channels())
    unet = build_unet(params, channels, 256 // params.feature_stride).to(device).eval()
    from diffusers import DDPMScheduler

    alphas = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod
    images = torch.rand(batch, 3, 256, 256, device=device)
    x0 = torch.randn(batch, channels, 16, 16, device=device)

    def eps(x, t):
        with autocast(device):
            return unet(x, torch.full((len(x),), t, device=device)).sample

    def invert(steps):
        return lambda: run_ddim(eps, x0, inversion_path(steps, alphas))

    def reconstruct(steps, percent):
        k = steps * percent // 100
        path = [(0, 1.0)] + [(t, float(alphas[t])) for t in step_grid(steps, 1000)[:k]]
        return lambda: run_ddim(eps, x0 + torch.randn_like(x0), path[::-1])

    with torch.no_grad():
        with autocast(device):
            backbone_ms = 1000 * timed(lambda: backbone(images), device, repeats) / batch
        print(f"\n{device} (batch {batch}): backbone {backbone_ms:.1f} ms/image; "
              f"UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M parameters")
        print(f"{'setting':<34}{'NFE':>5}{'diffusion ms':>14}{'total ms':>10}{'ratio':>8}")
        rows = []
        for steps in (2, 3, 5, 10):
            inv = 1000 * timed(invert(steps), device, repeats) / batch
            rec = 1000 * timed(reconstruct(steps, 100), device, repeats) / batch
            rows.append((f"inversion S={steps}", steps, inv, None))
            rows.append((f"reconstruction S={steps}, start 100%", steps, rec, rec / inv))
        inv3 = 1000 * timed(invert(3), device, repeats) / batch
        # Table 4's best reconstruction: S = 100 from 10 % (93.3 % I-AUROC) vs inversion S = 3.
        rec = 1000 * timed(reconstruct(100, 10), device, repeats) / batch
        rows.append(("reconstruction S=100, start 10%", 10, rec, rec / inv3))
        for name, nfe, ms, ratio in rows:
            ratio_text = f"{ratio:8.2f}" if ratio is not None else ""
            print(f"{name:<34}{nfe:>5}{ms:>14.1f}{ms + backbone_ms:>10.1f}{ratio_text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    bench(torch.device("cpu"), args.batch, args.repeats)
    if torch.cuda.is_available():
        bench(torch.device("cuda"), args.batch, args.repeats * 10)
    print("\nratio: reconstruction ms / inversion ms (same S; last row against inversion S=3)")


if __name__ == "__main__":
    main()
