"""Quality of the course's trained emoji models (data/models/), measured, not judged by eye:

- emoji-sd: generate 50 emoji names and rank the intended emoji among all 1,870 by pixel distance at 16 px
  (top-1, top-10, median rank; chance is 0.05%, 0.5% and 935);
- emoji-ddpm: each sample's distance to its nearest training image (one of the yellow face emoji), against the same
  for a random-weight model of the same architecture and for pure noise;
- the VAE: reconstruction PSNR over all 1,870 emoji at 64 px.

    python bench/emoji_quality.py                  # everything (about 2 minutes on one CPU core)
    python bench/emoji_quality.py --prompts 20     # quicker
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
from course_utils.models.architectures import SD_SCHEDULER_CONFIG  # noqa: E402
from course_utils.models.emoji import models_dir  # noqa: E402
from course_utils.text_to_image import encode_all, psnr  # noqa: E402


def bench_sd(images: torch.Tensor, captions: list[str], prompts: int, steps: int, scales: list[float]) -> None:
    """Retrieval of the intended emoji for `prompts` captions, at each guidance scale. The pipeline is loaded with the
    plain call of the diffusers docs (no dtype, no device) and samples with the folder's own scheduler; PNDM, the
    scheduler SD 1.5's repo names, is measured beside it at the same settings."""
    from diffusers import DiffusionPipeline, PNDMScheduler

    pipe = DiffusionPipeline.from_pretrained(models_dir() / "emoji-sd")
    pipe.set_progress_bar_config(disable=True)
    indices = q.pick_captions(prompts, len(captions))
    own = pipe.scheduler
    for scheduler in (own, PNDMScheduler.from_config(SD_SCHEDULER_CONFIG)):
        pipe.scheduler = scheduler
        name = type(scheduler).__name__.replace("Scheduler", "") + (" (the folder's)" if scheduler is own else "")
        for scale in scales:
            started = time.perf_counter()
            result = q.text_to_image_retrieval(pipe, images, captions, indices, steps=steps, guidance_scale=scale)
            took = time.perf_counter() - started
            print(f"emoji-sd, {name}, {steps} steps, guidance {scale:g}: {result}  [{took:.0f} s]", flush=True)


def bench_vae(images: torch.Tensor) -> None:
    """PSNR of the shipped VAE's reconstructions (the mean latent, decoded) over every emoji."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(models_dir() / "emoji-sd", subfolder="vae", dtype=torch.float32)
    means, _ = encode_all(vae, images)
    with torch.no_grad():
        recon = torch.cat([vae.decode(means[i : i + 128]).sample for i in range(0, len(means), 128)])
    print(
        f"VAE: reconstruction PSNR {psnr(recon, images):.1f} dB over {len(images)} emoji at {images.shape[-1]} px; "
        f"scaling_factor {vae.config.scaling_factor:.4f}"
    )


def bench_ddpm(images: torch.Tensor, count: int, steps: int) -> None:
    """Nearest-face distance of DDIM samples: trained model vs random weights vs pure noise. emoji-ddpm is trained on
    the yellow face emoji ('emoji-faces'), so its references are those faces (`images` holds all emoji, file order)."""
    from diffusers import DDIMPipeline, UNet2DModel

    from course_utils.folders import emoji_metadata
    from course_utils.training.datasets import is_yellow_face

    _, rows = emoji_metadata()
    faces = images[[i for i, row in enumerate(rows) if is_yellow_face(row)]]
    folder = models_dir() / "emoji-ddpm"
    trained = DDIMPipeline.from_pretrained(folder, dtype=torch.float32)
    size = trained.unet.config.sample_size
    references = torch.nn.functional.interpolate((faces + 1) / 2, size=(size, size), mode="area")
    torch.manual_seed(0)
    random_unet = UNet2DModel.from_config(trained.unet.config)
    results = {}
    for name, unet in (("trained", trained.unet), ("random weights", random_unet)):
        pipe = DDIMPipeline(unet=unet, scheduler=trained.scheduler)
        pipe.set_progress_bar_config(disable=True)
        samples = pipe(
            batch_size=count, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt"
        ).images
        samples = torch.as_tensor(samples)
        samples = samples.permute(0, 3, 1, 2) if samples.shape[-1] == 3 else samples
        results[name] = q.nearest_distance(samples, references)
    results["uniform noise"] = q.nearest_distance(
        torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(0)), references
    )
    for name, distances in results.items():
        print(
            f"emoji-ddpm, {name:<15}: RMS distance to the nearest of the {len(faces)} face emoji at 16 px, median "
            f"{distances.median():.3f} (mean {distances.mean():.3f}) over {count} samples, DDIM {steps} steps"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, nargs="+", default=[3.0, 7.5])
    parser.add_argument("--ddpm_samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, captions = load_emoji_tensors()
    bench_vae(images)
    bench_sd(images, captions, args.prompts, args.steps, args.guidance)
    bench_ddpm(images, args.ddpm_samples, 50)


if __name__ == "__main__":
    main()
