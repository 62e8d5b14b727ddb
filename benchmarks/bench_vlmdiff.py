"""VLMDiff (paper 003) at its real size: parameters, memory per stage, step and image times.

The networks are SD v1.5's (UNet2DConditionModel 320/640/1280/1280, kl-f8
AutoencoderKL), DiAD's control copy of the UNet, CLIP ViT-L/14's text tower
and DINO ViT-S/8, built from their configs with random weights (the hub is
unreachable here; time and memory do not depend on the weights). Prints

1. parameters per network and what trains;
2. the training memory of the weights, gradients and AdamW states of each
   stage (the floor a GPU needs before activations), in GiB;
3. measured seconds per training step (batch ``--batch``) and per reconstructed
   image (10 DDIM steps) on the CPU and, when present, on CUDA with mixed
   precision and its peak memory.

    python benchmarks/bench_vlmdiff.py [--batch 2 --skip-cpu-steps]
"""

from __future__ import annotations

import argparse

import torch
from timing import timed

from diffad.device import autocast
from diffad.methods.vlmdiff.control import DiadControl, controlled_unet, freeze_unet_encoder
from diffad.weights.rehearsal import SD15_UNET, SD_VAE

GIB = 1024**3

#: SD v1.5's UNet and VAE configs (the published config.json files, as a rehearsal builds
#: them), at VLMDiff's 256 px (32 x 32 latents).
SD15_UNET_256 = {**SD15_UNET, "sample_size": 32}
SD15_VAE_256 = {**SD_VAE, "sample_size": 256}


def count(module: torch.nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def networks(device: torch.device):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel(**SD15_UNET_256)
    control = DiadControl.from_unet(unet)
    vae = AutoencoderKL(**SD15_VAE_256)
    freeze_unet_encoder(unet)
    return unet.to(device), control.to(device), vae.to(device)


def report_sizes(unet, control, vae) -> None:
    from diffad.models.discriminator import PatchDiscriminator

    disc = PatchDiscriminator()
    m = 1e6
    print(f"parameters (M): UNet {count(unet) / m:.1f} (trains {count(unet, True) / m:.1f}: "
          f"its decoder), control {count(control) / m:.1f}, VAE {count(vae) / m:.1f}, "
          f"discriminator {count(disc) / m:.2f}")
    # fp32 weights; gradients and AdamW's two moments of what trains (16 B per parameter).
    ldm = (count(unet) + count(control) + count(vae)) * 4 + (
        count(unet, True) + count(control)) * 12
    ae = (count(vae) + count(disc)) * 16 + 14.7e6 * 4  # + LPIPS's VGG-16 convs, frozen
    print(f"memory floor before activations (GiB): autoencoder finetuning {ae / GIB:.2f}, "
          f"diffusion training {ldm / GIB:.2f} (+ CLIP ViT-L/14 text 0.46 frozen, or "
          "precomputed), inference "
          f"{(count(unet) + count(control) + count(vae)) * 4 / GIB:.2f} (+ DINO ViT-S/8 0.08)")
    for name, billions in (("InternVL2-8B", 8.1), ("BLIP-2 FLAN-T5-XXL", 12.2),
                           ("DeepSeek-VL 1.3B", 2.0)):
        print(f"captioner {name}: {billions} B parameters (its model card) -> "
              f"{billions * 1e9 * 2 / GIB:.1f} GiB of 16-bit weights before activations")


def bench(device: torch.device, batch: int, repeats: int) -> None:
    unet, control, vae = networks(device)
    if device.type == "cpu":
        report_sizes(unet, control, vae)
    text = torch.randn(batch, 77, 768, device=device)
    image = torch.rand(batch, 3, 256, 256, device=device)
    latents = torch.randn(batch, 4, 32, 32, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    trainable = [p for p in unet.parameters() if p.requires_grad] + list(control.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            eps = controlled_unet(unet, control, latents, t, text, image)
        eps.float().pow(2).mean().backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = timed(step, device, repeats)
    peak = (f", peak {torch.cuda.max_memory_allocated(device) / GIB:.1f} GiB"
            if device.type == "cuda" else "")
    print(f"{device.type}: diffusion training step, batch {batch}: {seconds:.2f} s{peak}")

    @torch.no_grad()
    def reconstruct():
        with autocast(device):
            z = vae.encode(image * 2 - 1).latent_dist.mean * 0.18215
            for step_t in range(901, 0, -100):
                timestep = torch.full((batch,), step_t, device=device)
                controlled_unet(unet, control, z, timestep, text, image)
            vae.decode(z / 0.18215)

    seconds = timed(reconstruct, device, repeats)
    print(f"{device.type}: reconstruction (encode, 10 DDIM steps, decode): "
          f"{1000 * seconds / batch:.0f} ms per image at batch {batch}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-cpu-steps", action="store_true",
                        help="sizes and memory only on the CPU (the steps take minutes)")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.skip_cpu_steps:
        report_sizes(*networks(torch.device("cpu")))
    else:
        bench(torch.device("cpu"), args.batch, args.repeats)
    if torch.cuda.is_available():
        bench(torch.device("cuda"), 12, 3)


if __name__ == "__main__":
    main()
