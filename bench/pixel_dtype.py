"""Lesson 01's question: in which dtype should a pixel-space DDPM run its 250 scheduler steps?

bf16 keeps 8 bits of mantissa, so every scheduler update x_{t-1} = a * x_t + b * eps + sigma * z is rounded to about
2-3 significant digits, 250 times over. This runs the course's emoji-ddpm (the same UNet2DModel + DDPMScheduler
layout as google/ddpm-cat-256) from the same starting noise in fp32, fully in bf16 (the UNet and the sample, as
`DDPMPipeline` does with a bf16 UNet), and with a bf16 UNet but an fp32 sample, and prints:

- the RMS pixel difference of each from the fp32 image (in [0, 1] units), against the difference between two fp32
  runs with different seeds (what "a different picture" means);
- each run's median distance to the nearest training emoji (lower = more emoji-like; bench/emoji_quality.py).

    python bench/pixel_dtype.py              # 32 samples, 250 DDPM steps (about a minute on one core)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_utils import emoji_quality as q  # noqa: E402
from course_utils.folders import load_emoji_tensors  # noqa: E402
from course_utils.models.emoji import models_dir  # noqa: E402


@torch.no_grad()
def sample(unet, scheduler, noise: torch.Tensor, steps: int, model_dtype, sample_dtype, seed: int) -> torch.Tensor:
    """The lesson's DDPM loop with the UNet in `model_dtype` and x_t kept in `sample_dtype`; images in [0, 1]."""
    unet = unet.to(model_dtype)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    x = noise.to(sample_dtype)
    for t in scheduler.timesteps:
        eps = unet(x.to(model_dtype), t, return_dict=False)[0].to(sample_dtype)
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
    return (x.float() / 2 + 0.5).clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--steps", type=int, default=250)
    args = parser.parse_args()
    from diffusers import DDPMScheduler, UNet2DModel

    folder = models_dir() / "emoji-ddpm"
    unet, scheduler = UNet2DModel.from_pretrained(folder).eval(), DDPMScheduler.from_pretrained(folder)
    size = unet.config.sample_size
    shape = (args.samples, 3, size, size)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    other = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    references = (load_emoji_tensors()[0] + 1) / 2  # 64 px; compared at 16 px
    runs = {
        "fp32": (torch.float32, torch.float32, noise, 0),
        "fp32, other seed": (torch.float32, torch.float32, other, 1),
        "bf16 UNet and sample": (torch.bfloat16, torch.bfloat16, noise, 0),
        "bf16 UNet, fp32 sample": (torch.bfloat16, torch.float32, noise, 0),
    }
    images = {}
    for name, (model_dtype, sample_dtype, start, seed) in runs.items():
        began = time.perf_counter()
        images[name] = sample(unet, scheduler, start, args.steps, model_dtype, sample_dtype, seed)
        spent = time.perf_counter() - began
        distance = q.nearest_distance(images[name], references).median()
        rms = (images[name] - images["fp32"]).pow(2).mean(dim=(1, 2, 3)).sqrt().median()
        print(
            f"{name:<24} median RMS difference from fp32: {rms:.4f}   median nearest-emoji distance: "
            f"{distance:.3f}   [{spent:.0f} s]"
        )


if __name__ == "__main__":
    main()
