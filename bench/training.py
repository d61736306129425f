"""Training benchmark: the course trainer (course_utils.training.train) against a reference loop written the way the
diffusers basic-training tutorial writes it (accelerate, no compile, num_workers=0, `.item()` every step), on the
same model, data, batch size and number of steps, measured alternately in one run. Prints images per second for each
and the ratio; on a GPU also the model FLOPs utilisation from an analytic FLOP count of the UNet.

    python bench/training.py                 # CPU: the smoke preset's tiny UNet at 32 px on the shipped dataset
    python bench/training.py --size full     # GPU: the seed's 128 px UNet (128-512 channels), batch 16
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import sync  # noqa: E402


def dataset_for(image_size: int):
    """The shipped emoji dataset, resized and normalised to [-1, 1] (no random flips: both loops see the same data)."""
    from course_utils.data import load_offline, with_transform

    return with_transform(load_offline(), image_size, flip=False)


def reference_loop(config, dataset, steps: int) -> float:
    """The tutorial's train_loop, cut to `steps` optimizer steps; returns the seconds the steps took."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from tqdm.auto import tqdm

    from course_utils.training import collate_images
    from course_utils.training_config import make_unet

    torch.manual_seed(config.seed)
    model = make_unet(config)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
    mixed = "fp16" if torch.cuda.is_available() else "no"
    accelerator = Accelerator(mixed_precision=mixed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.train_batch_size, shuffle=True,
                                         collate_fn=collate_images, num_workers=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, config.lr_warmup_steps, steps)
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    done, progress = 0, tqdm(total=steps, disable=True)
    sync(accelerator.device.type)
    start = time.perf_counter()
    while done < steps:
        for batch in loader:
            clean = batch["images"]
            noise = torch.randn(clean.shape, device=clean.device)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (clean.shape[0],), device=clean.device)
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            with accelerator.accumulate(model):
                noise_pred = model(noisy, timesteps, return_dict=False)[0]
                loss = F.mse_loss(noise_pred, noise)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            progress.set_postfix(loss=loss.detach().item(), lr=lr_scheduler.get_last_lr()[0])
            done += 1
            if done == steps:
                break
    sync(accelerator.device.type)
    return time.perf_counter() - start


def course_trainer(config, dataset, steps: int) -> float:
    """The course trainer for `steps` steps (EMA, checkpoint and a 1-step sample at the end included); returns seconds."""
    from course_utils.training import train

    folder = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        run_config = config.replace(max_steps=steps, output_dir=str(folder), checkpointing_steps=steps,
                                    save_image_steps=steps, eval_batch_size=1, num_inference_steps=1, logger="none",
                                    random_flip=False)
        start = time.perf_counter()
        train(run_config, dataset)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def unet_flops_per_image(config) -> float:
    """Forward + backward FLOPs of one training image, counted by torch's FlopCounterMode on the real graph (x3 fwd)."""
    from torch.utils.flop_counter import FlopCounterMode

    from course_utils.training_config import make_unet

    model = make_unet(config)
    x = torch.zeros(1, 3, config.image_size, config.image_size)
    with FlopCounterMode(display=False) as counter:
        model(x, torch.tensor([10]), return_dict=False)
    return 3.0 * counter.get_total_flops()


def main() -> None:
    from course_utils.training_config import TrainingConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "full"], default="full" if torch.cuda.is_available() else "tiny")
    parser.add_argument("--steps", type=int, default=None, help="steady-state steps measured (default 60 tiny, 20 full)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, for MFU")
    args = parser.parse_args()
    os.environ["TQDM_DISABLE"] = "1"  # the trainer's progress bar would flood the report
    config = TrainingConfig.full() if args.size == "full" else TrainingConfig.smoke()
    steps = args.steps or (20 if args.size == "full" else 60)
    dataset = dataset_for(config.image_size)
    images = steps * config.train_batch_size
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, {args.size} UNet at {config.image_size} px, batch {config.train_batch_size}, {steps} steps, "
          f"{len(dataset)} images")
    reference_loop(config, dataset, 3)  # warm-up: kernels, allocator, file cache
    # Each side runs `steps` and 2*`steps` steps; the difference is the time of `steps` steady-state steps, without
    # the fixed costs (building the model, the trainer's final EMA save, checkpoint and sample).
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(course_trainer(config, dataset, 2 * steps) - course_trainer(config, dataset, steps))
        theirs.append(reference_loop(config, dataset, 2 * steps) - reference_loop(config, dataset, steps))
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    print(f"course trainer  {images / ours_s:8.1f} images/s  ({ours_s:.2f} s for {steps} steady steps)")
    print(f"reference loop  {images / theirs_s:8.1f} images/s  ({theirs_s:.2f} s for {steps} steady steps)")
    print(f"RATIO course trainer vs reference (images/s): {theirs_s / ours_s:.2f}  (goal: >= 1.0 on CPU, >= 2 on a GPU)")
    if device == "cuda":
        flops = unet_flops_per_image(config)
        peak = (args.peak_tflops or 989.0) * 1e12  # H100/H200 SXM dense bf16
        print(f"UNet: {flops / 1e9:.1f} GFLOP per training image; MFU course {flops * images / ours_s / peak:.1%}, "
              f"reference {flops * images / theirs_s / peak:.1%} (of {peak / 1e12:.0f} TFLOP/s)")


if __name__ == "__main__":
    main()
