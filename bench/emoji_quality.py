"""Quality of the course's trained emoji models (data/models/), measured, not judged by eye:

- emoji-sd: generate 50 emoji names and rank the intended emoji among all 1,870 by pixel distance at 16 px
  (top-1, top-10, median rank; chance is 0.05%, 0.5% and 935);
- emoji-sd3: the same at its pipeline's defaults (28 steps, guidance 7) and at 8 steps, with the folder's scheduler,
  and at other shifts of that scheduler;
- both text-to-image models against the number of steps (1, 2, 4, 8, 16, 28), on the same captions and seeds;
- emoji-ddpm: each sample's distance to its nearest training image (one of the yellow face emoji), against the same
  for a random-weight model of the same architecture and for pure noise;
- the VAE: reconstruction PSNR over all 1,870 emoji at 64 px.

    python bench/emoji_quality.py                  # everything (about 2 minutes on one CPU core)
    python bench/emoji_quality.py --prompts 20     # quicker
    python bench/emoji_quality.py --only sd3 steps # some parts: vae, sd, sd3, steps, ddpm
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


def _plain(name: str):
    """A shipped model loaded as the diffusers docs load any pipeline: no dtype, no device."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(models_dir() / name)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _default_guidance(pipe) -> float:
    """The guidance_scale a plain pipe(prompt) call uses: the default of the pipeline class's __call__."""
    import inspect

    return inspect.signature(type(pipe).__call__).parameters["guidance_scale"].default


def _report(label: str, pipe, images, captions, indices, steps: int, scale: float) -> None:
    started = time.perf_counter()
    result = q.text_to_image_retrieval(pipe, images, captions, indices, steps=steps, guidance_scale=scale)
    print(f"{label}, {steps} steps, guidance {scale:g}: {result}  [{time.perf_counter() - started:.0f} s]", flush=True)


def bench_sd(images: torch.Tensor, captions: list[str], prompts: int, steps: int, scales: list[float]) -> None:
    """Retrieval of the intended emoji for `prompts` captions, at each guidance scale. The pipeline is loaded with the
    plain call of the diffusers docs (no dtype, no device) and samples with the folder's own scheduler; PNDM, the
    scheduler SD 1.5's repo names, is measured beside it at the same settings."""
    from diffusers import PNDMScheduler

    pipe = _plain("emoji-sd")
    indices = q.pick_captions(prompts, len(captions))
    own = pipe.scheduler
    for scheduler in (own, PNDMScheduler.from_config(SD_SCHEDULER_CONFIG)):
        pipe.scheduler = scheduler
        name = type(scheduler).__name__.replace("Scheduler", "") + (" (the folder's)" if scheduler is own else "")
        for scale in scales:
            _report(f"emoji-sd, {name}", pipe, images, captions, indices, steps, scale)


def bench_sd3(images: torch.Tensor, captions: list[str], prompts: int, shifts: list[float]) -> None:
    """emoji-sd3 with the plain call at the pipeline's default guidance, 28 and 8 steps: first the folder's
    scheduler, then the same scheduler at other static shifts; then 4 steps at weaker guidance."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    pipe = _plain("emoji-sd3")
    scale = _default_guidance(pipe)
    indices = q.pick_captions(prompts, len(captions))
    own = pipe.scheduler
    for shift in [own.config.shift] + [s for s in shifts if s != own.config.shift]:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(own.config, shift=shift)
        label = f"emoji-sd3, FlowMatchEuler shift {shift:g}" + (" (the folder's)" if shift == own.config.shift else "")
        for steps in (28, 8):
            _report(label, pipe, images, captions, indices, steps, scale)
    pipe.scheduler = own
    for guidance in (1.0, 3.0):  # few steps and strong guidance overshoot: the lesson shows 4 steps at 7
        _report("emoji-sd3, the folder's scheduler", pipe, images, captions, indices, 4, guidance)


def bench_steps(images: torch.Tensor, captions: list[str], prompts: int, counts: list[int]) -> None:
    """Quality against the number of steps for emoji-sd and emoji-sd3, each with its folder's scheduler and its
    pipeline's default guidance, on the same captions and seeds."""
    indices = q.pick_captions(prompts, len(captions))
    for name in ("emoji-sd", "emoji-sd3"):
        pipe = _plain(name)
        scale = _default_guidance(pipe)
        for steps in counts:
            _report(f"{name}, {type(pipe.scheduler).__name__}", pipe, images, captions, indices, steps, scale)


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


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, nargs="+", default=[3.0, 7.5])
    parser.add_argument("--shifts", type=float, nargs="+", default=[1.0, 2.0, 3.0, 6.0], help="emoji-sd3's shifts")
    parser.add_argument("--step_counts", type=int, nargs="+", default=[1, 2, 4, 8, 16, 28])
    parser.add_argument("--ddpm_samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="which parts to run")
    return parser.parse_args(argv)


PARTS = ("vae", "sd", "sd3", "steps", "ddpm")


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    torch.set_num_threads(args.threads)
    images, captions = load_emoji_tensors()
    runs = {
        "vae": lambda: bench_vae(images),
        "sd": lambda: bench_sd(images, captions, args.prompts, args.steps, args.guidance),
        "sd3": lambda: bench_sd3(images, captions, args.prompts, args.shifts),
        "steps": lambda: bench_steps(images, captions, args.prompts, args.step_counts),
        "ddpm": lambda: bench_ddpm(images, args.ddpm_samples, 50),
    }
    for part in args.only:
        runs[part]()


if __name__ == "__main__":
    main()
