"""Sampling benchmark: the course's Stable Diffusion loop (lesson 02) against StableDiffusionPipeline on the same
model, seed and steps, measured alternately in one run; then the fast path a learner can switch on, against the
eager pipeline. Prints UNet steps per second, seconds per image and the ratios.

    python bench/sampling.py                 # CPU: tiny stand-in (what a CI-class machine can show)
    python bench/sampling.py --size full     # GPU: SD 1.5 architecture at 512 px, 50 steps (random weights offline)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import compare  # noqa: E402


def load(size: str, device: str, dtype: torch.dtype):
    """StableDiffusionPipeline on the SD 1.5 stand-in (tiny or full-size architecture), or the cached real model."""
    import tempfile

    from diffusers import StableDiffusionPipeline

    from course_utils.models.registry import MODELS
    from course_utils.models.resolve import from_cache
    from course_utils.models.standins import get_standin

    spec = MODELS["sd15"]
    folder = (from_cache(spec) if size == "full" else None) or get_standin(
        Path(tempfile.gettempdir()) / "course-bench", spec, size
    )
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# Copied from notebooks/02_stable_diffusion_deconstructed.ipynb (its sd_generate);
# kept equal by tests/test_lesson02.py::test_the_sampling_benchmark_runs_the_lessons_loop
@torch.no_grad()
def course_loop(pipe, prompt: str, steps: int, guidance: float, height: int, width: int, generator) -> torch.Tensor:
    """The loop lesson 02 writes out (its `sd_generate`): encode, seeded noise, CFG denoising, VAE decode."""
    from diffusers.utils.torch_utils import randn_tensor

    tok, text_encoder, unet, vae, scheduler = pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae, pipe.scheduler
    ids = tok(
        [""] + [prompt], padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    text_embeddings = text_encoder(ids.to(unet.device), return_dict=False)[0]
    scheduler.set_timesteps(steps, device=unet.device)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    shape = (1, unet.config.in_channels, height // factor, width // factor)
    latents = randn_tensor(shape, generator=generator, device=unet.device, dtype=text_embeddings.dtype)
    latents = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        latent_model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        noise_pred = unet(latent_model_input, t, encoder_hidden_states=text_embeddings, return_dict=False)[0]
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        noise_pred = noise_pred_uncond + guidance * (noise_pred_text - noise_pred_uncond)
        latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
    image = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    return (image / 2 + 0.5).clamp(0, 1)


def fast_path(pipe, compile_mode: str | None):
    """What a learner can switch on: channels_last, fused QKV projections, SDPA (the default), torch.compile."""
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    pipe.fuse_qkv_projections()
    if compile_mode:
        pipe.unet = torch.compile(pipe.unet, mode=compile_mode, fullgraph=True)
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "full"], default="full" if torch.cuda.is_available() else "tiny")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 50 full, 20 tiny)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs of each side, alternating (default 15 tiny, 5 full)"
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=torch.cuda.is_available(),
        help="torch.compile the UNet in the fast path (default: on a GPU only; on a CPU it takes minutes)",
    )
    parser.add_argument(
        "--compile-mode",
        default="max-autotune" if torch.cuda.is_available() else "default",
        help="torch.compile's mode: max-autotune (fastest on a GPU, minutes of autotuning; the default "
        "there) or default (quicker to build; the default on a CPU)",
    )
    args = parser.parse_args()
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    full = args.size == "full"
    steps = args.steps or (50 if full else 20)
    args.repeats = args.repeats or (5 if full else 15)
    px = 512 if full else 64
    prompt, guidance = "a photo of an astronaut riding a horse on mars", 7.5
    base_dtype = torch.float16 if device == "cuda" else torch.float32
    threads = ""
    if device == "cpu" and not full:
        torch.set_num_threads(1)  # the tiny model's ops are too small to share; a second thread mostly adds noise
        threads = ", 1 CPU thread"
    print(f"device {device}{threads}, {args.size} SD 1.5 architecture, {px} px, {steps} steps, guidance {guidance}")

    # 1. The lesson's loop vs the pipeline: same components, same seed; the loop should add no overhead.
    pipe = load(args.size, device, base_dtype)
    gen = lambda: torch.Generator(device).manual_seed(0)  # noqa: E731
    settings = dict(num_inference_steps=steps, guidance_scale=guidance, height=px, width=px)
    ours = course_loop(pipe, prompt, steps, guidance, px, px, gen())
    theirs = pipe(prompt, generator=gen(), output_type="pt", **settings).images
    print(f"same image: max pixel difference {(ours.float() - theirs.float()).abs().max().item():.1e}")
    r = compare(
        lambda: course_loop(pipe, prompt, steps, guidance, px, px, gen()),
        lambda: pipe(prompt, generator=gen(), output_type="pt", **settings),
        device,
        repeats=args.repeats,
    )
    print(
        f"course loop  {r['candidate_s']:.3f} s/image, median of {args.repeats} "
        f"({steps / r['candidate_s']:.1f} UNet steps/s)"
    )
    print(
        f"pipeline     {r['reference_s']:.3f} s/image, median of {args.repeats} "
        f"({steps / r['reference_s']:.1f} UNet steps/s)"
    )
    print(
        f"RATIO loop vs pipeline (pipeline time / loop time): {r['speedup']:.3f}  "
        f"(90% interval {r['interval'][0]:.3f}-{r['interval'][1]:.3f}; goal: >= 0.98)"
    )

    # 2. The fast path vs the eager pipeline (fp16 on a GPU, fp32 on the CPU).
    eager = pipe
    fast_dtype = torch.bfloat16 if device == "cuda" else torch.float32
    fast = fast_path(load(args.size, device, fast_dtype), args.compile_mode if args.compile else None)
    start = time.perf_counter()
    fast(prompt, generator=gen(), output_type="pt", **settings)
    print(
        f"fast path warm-up{' (includes torch.compile)' if args.compile else ''}: "
        f"{time.perf_counter() - start:.1f} s, excluded below"
    )
    r = compare(
        lambda: fast(prompt, generator=gen(), output_type="pt", **settings),
        lambda: eager(prompt, generator=gen(), output_type="pt", **settings),
        device,
        repeats=args.repeats,
    )
    what = f"{str(fast_dtype).replace('torch.', '')} + channels_last + fused QKV + SDPA" + (
        f" + torch.compile ({args.compile_mode})" if args.compile else ""
    )
    print(f"fast path ({what}) {r['candidate_s']:.3f} s/image ({steps / r['candidate_s']:.1f} UNet steps/s)")
    print(f"eager {str(base_dtype).replace('torch.', '')} pipeline {r['reference_s']:.3f} s/image")
    print(
        f"RATIO fast path vs eager pipeline: {r['speedup']:.2f}x  "
        f"(90% interval {r['interval'][0]:.2f}-{r['interval'][1]:.2f}; goal on a GPU at full size: >= 1.8x)"
    )


if __name__ == "__main__":
    main()
