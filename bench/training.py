"""Training benchmark: the course trainer (course_utils.training.train) against a reference loop written the way the
diffusers basic-training tutorial writes it (accelerate, no compile, num_workers=0, a progress bar and `.item()`
every step), on the same model, data, batch size and steps, run alternately in one process. Prints images per second
for each and the ratio; on a GPU also the model FLOPs utilisation from the UNet's FLOP count.

    python bench/training.py                 # CPU: the smoke preset's tiny UNet at 32 px on the shipped dataset
    python bench/training.py --size full     # GPU: the seed's 128 px UNet (128-512 channels), batch 16
    python bench/training.py --variants      # also the trainer with channels_last, and with torch.compile

How: both loops stamp the time when each step starts. The steady window runs from the first stamp after the warm-up
to the last stamp, both taken right after the loop waited for the device (the reference reads the loss every step, the
course trainer every logging_steps), so the window holds exactly the work of its steps: no model building, compiling,
checkpoint or sample, and on a GPU no queued work left unmeasured. On a CPU, where other processes can stall a step,
the median step time is printed beside the window's mean.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import ratio_interval  # noqa: E402

WARMUP = 10  # steps before the window: kernels chosen, allocator warm, compiled graphs built


def dataset_for(image_size: int):
    """The shipped emoji dataset, resized and normalised to [-1, 1] (no random flips: both loops see the same data)."""
    from course_utils.data import with_transform
    from course_utils.folders import load_offline

    return with_transform(load_offline(), image_size, flip=False)


@contextlib.contextmanager
def quiet():
    """Both loops draw a progress bar and the trainer prints its settings: send them nowhere while timing."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
        yield


def reference_loop(config, dataset, steps: int) -> list[float]:
    """The tutorial's train_loop, cut to `steps` optimizer steps; returns the time each step started (and the end)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from tqdm.auto import tqdm

    from course_utils.training import collate_images, make_unet

    torch.manual_seed(config.seed)
    model = make_unet(config)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
    AcceleratorState._reset_state()  # the course trainer ran before with its own precision (bf16 on recent GPUs)
    GradientState._reset_state()
    accelerator = Accelerator(mixed_precision="fp16" if torch.cuda.is_available() else "no")
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.train_batch_size, shuffle=True, collate_fn=collate_images, num_workers=0
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, config.lr_warmup_steps, steps)
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    stamps, progress = [], tqdm(total=steps, disable=not accelerator.is_local_main_process)
    while len(stamps) < steps:
        for batch in loader:
            stamps.append(time.perf_counter())
            clean = batch["images"]
            noise = torch.randn(clean.shape, device=clean.device)
            timesteps = torch.randint(
                0, noise_scheduler.config.num_train_timesteps, (clean.shape[0],), device=clean.device
            )
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            with accelerator.accumulate(model):
                noise_pred = model(noisy, timesteps, return_dict=False)[0]
                loss = F.mse_loss(noise_pred, noise)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            progress.update(1)
            logs = {"loss": loss.detach().item(), "lr": lr_scheduler.get_last_lr()[0], "step": len(stamps)}
            progress.set_postfix(**logs)
            accelerator.log(logs, step=len(stamps))
            if len(stamps) == steps:
                break
    stamps.append(time.perf_counter())  # .item() above waited for the device
    progress.close()
    return stamps


def course_trainer(config, dataset, steps: int, **switches) -> list[float]:
    """The course trainer for `steps` steps; returns the time each step started (stamped where it draws the step's
    random numbers, right after the batch arrives, as in the reference) and the time the last read-back ended."""
    from course_utils.training import loop

    folder = Path(tempfile.mkdtemp(prefix="bench-train-"))
    stamps, original = [], loop.step_generator

    def stamped(*args, **kwargs):
        stamps.append(time.perf_counter())
        return original(*args, **kwargs)

    if config.gradient_accumulation_steps != 1:
        raise ValueError("The stamps count batches: benchmark with gradient_accumulation_steps=1.")
    run_config = config.replace(
        max_steps=steps,
        output_dir=str(folder),
        checkpointing_steps=steps,
        save_image_steps=steps,
        eval_batch_size=1,
        num_inference_steps=1,
        logger="none",
        random_flip=False,
        **switches,
    )
    loop.step_generator = stamped  # train() looks it up in its own module
    try:
        with quiet():
            loop.train(run_config, dataset)
    finally:
        loop.step_generator = original
        shutil.rmtree(folder, ignore_errors=True)
    return stamps


def steady(stamps: list[float], synced_every: int) -> tuple[float, float]:
    """(mean, median) seconds per step over the window from the first synced stamp after WARMUP to the last one.
    Stamp i is taken as step i+1 starts; after a read-back at step k (k % synced_every == 0) stamp k is exact."""
    first = -(-WARMUP // synced_every) * synced_every
    last = (len(stamps) - 1) // synced_every * synced_every
    if last <= first:
        raise ValueError(f"{len(stamps) - 1} steps leave no window after the {WARMUP}-step warm-up: use more --steps.")
    window = stamps[first : last + 1]
    gaps = [b - a for a, b in zip(window, window[1:])]
    return (window[-1] - window[0]) / (last - first), statistics.median(gaps)


def unet_flops_per_image(config) -> float:
    """Forward + backward FLOPs of one training image, counted by torch's FlopCounterMode on the real graph (x3 fwd)."""
    from torch.utils.flop_counter import FlopCounterMode

    from course_utils.training import make_unet

    model = make_unet(config)
    x = torch.zeros(1, 3, config.image_size, config.image_size)
    with FlopCounterMode(display=False) as counter:
        model(x, torch.tensor([10]), return_dict=False)
    return 3.0 * counter.get_total_flops()


@dataclass
class Settings:
    """What one run measures, with the defaults that depend on the size and the device filled in."""

    size: str
    config: object  # course_utils.training.TrainingConfig
    dataset: object
    steps: int
    repeats: int
    variants: bool
    peak_tflops: float | None
    on_gpu: bool
    threads: str


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: size, steps, repeats, the trainer's variants and the GPU's peak for MFU."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    on_gpu = torch.cuda.is_available()
    parser.add_argument("--size", choices=["tiny", "full"], default="full" if on_gpu else "tiny")
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per run, warm-up included (default 70 tiny, 50 full)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="runs of each loop, alternating (default 5 tiny, 2 full)"
    )
    parser.add_argument(
        "--variants",
        action=argparse.BooleanOptionalAction,
        default=on_gpu,
        help="also time the trainer with channels_last, and with channels_last + torch.compile "
        "(default: on a GPU; on a CPU compiling takes minutes)",
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, for MFU")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> Settings:
    """Fill in the defaults and load the dataset; the tiny UNet on a CPU runs on one thread."""
    from course_utils.training import TrainingConfig

    on_gpu = torch.cuda.is_available()
    config = TrainingConfig.full() if args.size == "full" else TrainingConfig.smoke()
    threads = ""
    if not on_gpu and args.size == "tiny":
        # the tiny UNet's ops are too small to share; a second thread mostly adds noise
        torch.set_num_threads(1)
        threads = ", 1 CPU thread"
    return Settings(
        size=args.size,
        config=config,
        dataset=dataset_for(config.image_size),
        steps=args.steps or (50 if args.size == "full" else 70),
        repeats=args.repeats or (2 if args.size == "full" else 5),
        variants=args.variants,
        peak_tflops=args.peak_tflops,
        on_gpu=on_gpu,
        threads=threads,
    )


def print_settings(s: Settings) -> None:
    """What is measured and how the two loops differ, printed before the run."""
    print(
        f"device {'cuda' if s.on_gpu else 'cpu'}{s.threads}, {s.size} UNet at {s.config.image_size} px, "
        f"batch {s.config.train_batch_size}, {s.steps} steps "
        f"per run ({WARMUP} warm-up), {s.repeats} runs of each, alternating; {len(s.dataset)} images",
        flush=True,
    )
    print(
        "reference: the diffusers tutorial's loop as written (fp16 autocast with a loss scaler on a GPU, no EMA); "
        "course trainer: its defaults (bf16 where the GPU has it, EMA every step)",
        flush=True,
    )


def run(s: Settings) -> dict[str, list[tuple[float, float]]]:
    """The reference loop and each trainer variant, alternately: (mean, median) seconds per step of every run."""
    candidates = {"course trainer": {}}
    if s.variants:
        candidates["+ channels_last"] = {"channels_last": True}
        candidates["+ channels_last + torch.compile"] = {"channels_last": True, "torch_compile": True}
    every = s.config.logging_steps
    with quiet():
        reference_loop(s.config, s.dataset, 3)  # first touch: file cache, allocator, kernel selection
    results = {name: [] for name in ["reference loop", *candidates]}
    for repeat in range(s.repeats):
        with quiet():
            results["reference loop"].append(steady(reference_loop(s.config, s.dataset, s.steps), 1))
        for name, switches in candidates.items():
            if switches.get("torch_compile") and repeat:
                continue  # each run compiles anew (a minute or more): one run of the compiled trainer
            results[name].append(steady(course_trainer(s.config, s.dataset, s.steps, **switches), every))
    return results


def report(s: Settings, results: dict[str, list[tuple[float, float]]]) -> None:
    """Images per second of each loop (and MFU on a GPU), then each variant's ratio against the reference."""
    images = s.config.train_batch_size
    ref_mean = statistics.median(r[0] for r in results["reference loop"])
    ref_median = statistics.median(r[1] for r in results["reference loop"])
    flops = unet_flops_per_image(s.config) if s.on_gpu else None
    peak = (s.peak_tflops or 989.0) * 1e12  # H100/H200 SXM dense bf16
    for name, runs in results.items():
        mean, median = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        line = f"{name:<34} {images / mean:8.1f} images/s  {mean * 1e3:7.1f} ms/step"
        if not s.on_gpu:  # on a GPU the trainer queues steps ahead between reads: single gaps say little
            line += f" (median step {median * 1e3:6.1f} ms)"
        if flops:
            line += f"  MFU {flops * images / mean / peak:.1%}"
        print(line)
    for name, runs in results.items():
        if name == "reference loop":
            continue
        mean, median = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        check = ""
        if len(runs) > 1:
            low, high = ratio_interval([r[0] for r in runs], [r[0] for r in results["reference loop"]])
            check = f"90% interval {low:.2f}-{high:.2f}; "
        if not s.on_gpu:
            check += f"median steps: {ref_median / median:.2f}; "
        print(
            f"RATIO {name} vs reference (images/s): {ref_mean / mean:.2f}  ({check}goal: >= 1.0 on CPU, >= 2 on a GPU)"
        )
    if flops:
        print(
            f"UNet: {flops / 1e9:.1f} GFLOP per training image (forward + backward); "
            f"MFU against {peak / 1e12:.0f} TFLOP/s"
        )


def main() -> None:
    s = settings(parse_args())
    print_settings(s)
    report(s, run(s))


if __name__ == "__main__":
    main()
