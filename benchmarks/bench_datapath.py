"""Data time per optimizer step, before and after the decoded-image and posterior caches.

The step is the one the issue names for this CPU: SD v1.5's real-size AutoencoderKL
(84 M parameters, random weights: time does not depend on them) at 256 px, batch
``--batch``, as

- the autoencoder finetuning's step (encode, decode, backward; L1 loss only, the
  rest of LDM's loss adds compute, not data), and
- VLMDiff's and the LoRA's frozen-VAE work per step (an encode of the batch).

Images are ``--side`` px PNGs (MVTec AD's 700-1024 px; Real-IAD's 2-5 MP are
slower still) written here. Before: each step decodes and resizes its batch
in the main process (``ImageFiles``, as the trainer read it) and the frozen
encoder runs again; after: the batch comes from the memory-mapped uint8 cache
(``CachedImages``) and z from the posteriors encoded once (``Posteriors``).

    python benchmarks/bench_datapath.py [--side 1024 --batch 4 --repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timing import timed

from diffad.data.image_cache import CachedImages
from diffad.data.loader import ImageFiles
from diffad.models.posterior import Posteriors
from diffad.weights.rehearsal import sd_vae


def write_images(folder: Path, n: int, side: int) -> list[str]:
    """Photographs compress better than noise: a smooth scene with some sensor noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side] / side
    paths = []
    for i in range(n):
        scene = np.stack([np.sin(6 * x + i), np.cos(5 * y - i), x * y], axis=-1) * 0.4 + 0.5
        pixels = np.clip(scene + rng.normal(0, 0.03, scene.shape), 0, 1)
        path = folder / f"{i:03d}.png"
        Image.fromarray((pixels * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def batch_of(dataset, rows: list[int]) -> torch.Tensor:
    return torch.stack([dataset[i] for i in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1024, help="side of the PNG files")
    parser.add_argument("--resolution", type=int, default=256, help="training side")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    print(f"torch threads: {torch.get_num_threads()}; {args.images} PNGs of {args.side} px, "
          f"trained at {args.resolution} px, batch {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), args.images, args.side)
        rows = list(range(args.batch))
        files = ImageFiles(paths, args.resolution)
        start = time.perf_counter()
        cached = CachedImages(paths, args.resolution, Path(tmp) / "cache")
        build = time.perf_counter() - start
        decode = timed(lambda: batch_of(files, rows), cpu, args.repeats)
        read = timed(lambda: batch_of(cached, rows), cpu, args.repeats)

        vae = sd_vae()
        x = batch_of(cached, rows) * 2 - 1
        with torch.no_grad():
            encode = timed(lambda: vae.encode(x).latent_dist.sample(), cpu, args.repeats)
        vae.train()
        optimizer = torch.optim.Adam(vae.parameters(), lr=1e-6)

        def autoencoder_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            out = vae(x, sample_posterior=True).sample
            (out - x).abs().mean().backward()
            optimizer.step()

        step = timed(autoencoder_step, cpu, args.repeats)
        vae.eval()

        def posterior(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            dist = vae.encode(images * 2 - 1).latent_dist
            return dist.mean, dist.std

        start = time.perf_counter()
        posteriors = Posteriors(posterior, [(cached[i], i) for i in rows], args.batch)
        encode_once = time.perf_counter() - start
        generator = torch.Generator().manual_seed(0)
        draw = timed(lambda: posteriors.sample(rows, generator, cpu), cpu, args.repeats)

    ms = 1e3
    print(f"\none-off: decoding {args.images} images into the cache {build:.2f} s "
          f"({build / args.images * ms:.0f} ms each); posteriors of {args.batch} "
          f"{encode_once:.2f} s")
    print(f"per batch: decode+resize {decode * ms:.0f} ms, cache read {read * ms:.2f} ms; "
          f"frozen VAE encode {encode * ms:.0f} ms, posterior draw {draw * ms:.3f} ms; "
          f"autoencoder step {step:.2f} s")
    print("\ndata time per step as a fraction of the step:")
    print(f"  autoencoder finetuning: before {decode / (decode + step):.1%}, "
          f"after {read / (read + step):.2%}")
    before, after = decode + encode, read + draw
    print(f"  frozen-VAE trainings (VLMDiff, LoRA): decode + encode {before * ms:.0f} ms "
          f"-> cache read + draw {after * ms:.2f} ms per step "
          f"({before / after:.0f}x less); as a fraction of this CPU's autoencoder-size "
          f"step: before {before / (before + step):.1%}, after {after / (after + step):.2%}")


if __name__ == "__main__":
    main()
