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
from dataclasses import dataclass
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


PROMPT, GUIDANCE = "a photo of an astronaut riding a horse on mars", 7.5


@dataclass
class Settings:
    """What one run measures, with the defaults that depend on the size and the device filled in."""

    size: str
    device: str
    steps: int
    repeats: int
    px: int
    compile: bool
    compile_mode: str
    threads: str


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: size, steps, repeats and the fast path's torch.compile switches."""
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
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> Settings:
    """Fill in the defaults; the tiny model on a CPU runs on one thread."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    full = args.size == "full"
    threads = ""
    if device == "cpu" and not full:
        torch.set_num_threads(1)  # the tiny model's ops are too small to share; a second thread mostly adds noise
        threads = ", 1 CPU thread"
    return Settings(
        size=args.size,
        device=device,
        steps=args.steps or (50 if full else 20),
        repeats=args.repeats or (5 if full else 15),
        px=512 if full else 64,
        compile=args.compile,
        compile_mode=args.compile_mode,
        threads=threads,
    )


def run(s: Settings) -> dict:
    """1. The lesson's loop vs the pipeline: same components, same seed; the loop should add no overhead.
    2. The fast path vs the eager pipeline (fp16 on a GPU, fp32 on the CPU)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    base_dtype = torch.float16 if s.device == "cuda" else torch.float32
    fast_dtype = torch.bfloat16 if s.device == "cuda" else torch.float32
    pipe = load(s.size, s.device, base_dtype)
    gen = lambda: torch.Generator(s.device).manual_seed(0)  # noqa: E731
    options = dict(num_inference_steps=s.steps, guidance_scale=GUIDANCE, height=s.px, width=s.px)
    loop = lambda: course_loop(pipe, PROMPT, s.steps, GUIDANCE, s.px, s.px, gen())  # noqa: E731
    ours = loop()
    theirs = pipe(PROMPT, generator=gen(), output_type="pt", **options).images
    difference = (ours.float() - theirs.float()).abs().max().item()
    eager = lambda: pipe(PROMPT, generator=gen(), output_type="pt", **options)  # noqa: E731
    loop_vs_pipeline = compare(loop, eager, s.device, repeats=s.repeats)
    fast = fast_path(load(s.size, s.device, fast_dtype), s.compile_mode if s.compile else None)
    start = time.perf_counter()
    fast(PROMPT, generator=gen(), output_type="pt", **options)
    warmup_s = time.perf_counter() - start
    fast_vs_eager = compare(
        lambda: fast(PROMPT, generator=gen(), output_type="pt", **options), eager, s.device, repeats=s.repeats
    )
    return {
        "base_dtype": base_dtype,
        "fast_dtype": fast_dtype,
        "difference": difference,
        "loop_vs_pipeline": loop_vs_pipeline,
        "warmup_s": warmup_s,
        "fast_vs_eager": fast_vs_eager,
    }


def print_settings(s: Settings) -> None:
    """The line that says what is measured, printed before the run."""
    print(
        f"device {s.device}{s.threads}, {s.size} SD 1.5 architecture, {s.px} px, {s.steps} steps, guidance {GUIDANCE}"
    )


def report(s: Settings, results: dict) -> None:
    """Seconds per image, UNet steps per second and the two ratios with their intervals."""
    print(f"same image: max pixel difference {results['difference']:.1e}")
    r = results["loop_vs_pipeline"]
    for name, seconds in (("course loop ", r["candidate_s"]), ("pipeline    ", r["reference_s"])):
        print(f"{name} {seconds:.3f} s/image, median of {s.repeats} ({s.steps / seconds:.1f} UNet steps/s)")
    print(
        f"RATIO loop vs pipeline (pipeline time / loop time): {r['speedup']:.3f}  "
        f"(90% interval {r['interval'][0]:.3f}-{r['interval'][1]:.3f}; goal: >= 0.98)"
    )
    print(
        f"fast path warm-up{' (includes torch.compile)' if s.compile else ''}: "
        f"{results['warmup_s']:.1f} s, excluded below"
    )
    r = results["fast_vs_eager"]
    what = f"{str(results['fast_dtype']).replace('torch.', '')} + channels_last + fused QKV + SDPA" + (
        f" + torch.compile ({s.compile_mode})" if s.compile else ""
    )
    print(f"fast path ({what}) {r['candidate_s']:.3f} s/image ({s.steps / r['candidate_s']:.1f} UNet steps/s)")
    print(f"eager {str(results['base_dtype']).replace('torch.', '')} pipeline {r['reference_s']:.3f} s/image")
    print(
        f"RATIO fast path vs eager pipeline: {r['speedup']:.2f}x  "
        f"(90% interval {r['interval'][0]:.2f}-{r['interval'][1]:.2f}; goal on a GPU at full size: >= 1.8x)"
    )


def main() -> None:
    s = settings(parse_args())
    print_settings(s)
    report(s, run(s))


if __name__ == "__main__":
    main()
