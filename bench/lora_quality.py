"""Before and after a LoRA, measured: does emoji-sd draw the held-out emoji "in inverted style"
nearer to their inverted targets with the LoRA than without? Does it still draw plain emoji without
the trigger? Does it copy its training pictures (the distance to the nearest one)?

    python bench/lora_quality.py                                   # the shipped inverted LoRA
    python bench/lora_quality.py --concept monochrome              # the shipped monochrome LoRA
    python bench/lora_quality.py --lora outputs/lora-inverted      # one you trained

Distances are RMS pixel distances at 16 px in 0-1 units (as bench/emoji_quality.py measures), one
image per prompt from seeds 0, 100, ... (--seeds of them), UniPC 20 steps, guidance 4.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_utils.emoji_quality import distance_to_targets, generate, nearest_in  # noqa: E402
from course_utils.folders import load_emoji_tensors, load_image_tensors  # noqa: E402
from course_utils.models.emoji import models_dir  # noqa: E402
from course_utils.paths import data_root  # noqa: E402


def plain_emoji(names: list[str]) -> torch.Tensor:
    """The shipped emoji of these names, in [0, 1] (N, 3, 64, 64)."""
    images, captions = load_emoji_tensors()
    return (images[[captions.index(name) for name in names]] + 1) / 2


def measure(pipe, folder: Path, seeds: int, guidance: float, style: str) -> dict:
    """Mean distances over `seeds` seeds: inverted prompts to their inverted targets, plain prompts
    to the plain emoji, and inverted prompts to the nearest training image (seed 0)."""
    targets, prompts = load_image_tensors(folder, 64)
    targets = (targets + 1) / 2
    plain = [p.replace(f" in {style} style", "") for p in prompts]
    originals = plain_emoji(plain)
    to_target, to_plain = [], []
    for s in range(seeds):
        to_target.append(distance_to_targets(generate(pipe, prompts, seed=100 * s, guidance_scale=guidance), targets))
        to_plain.append(distance_to_targets(generate(pipe, plain, seed=100 * s, guidance_scale=guidance), originals))
    train_targets, _ = load_image_tensors(folder.parent / "train", 64)
    images = generate(pipe, prompts, seed=0, guidance_scale=guidance)
    nearest, _ = nearest_in(images, (train_targets + 1) / 2)
    return {
        "styled prompts -> targets": torch.stack(to_target).mean().item(),
        "plain prompts -> plain emoji": torch.stack(to_plain).mean().item(),
        "styled prompts -> nearest training image": nearest.mean().item(),
    }


def main() -> None:
    """Print the distances without and with the LoRA, for the held-out and the training emoji."""
    from diffusers import StableDiffusionPipeline, UniPCMultistepScheduler

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concept", default="inverted", choices=("inverted", "monochrome"))
    parser.add_argument("--lora", default=None, help="default: the shipped emoji-sd-lora-<concept>")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    concepts = data_root("lora-concepts", what="LoRA concept folder") / "lora-concepts"  # honours COURSE_DATA_DIR
    pipe = StableDiffusionPipeline.from_pretrained(
        models_dir() / "emoji-sd", dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    for label in ("without LoRA", "with LoRA"):
        if label == "with LoRA":
            pipe.load_lora_weights(args.lora or models_dir() / f"emoji-sd-lora-{args.concept}")
            pipe.set_adapters(["default_0"], adapter_weights=[args.scale])
        for split in ("heldout", "train"):
            started = time.perf_counter()
            rows = measure(pipe, concepts / args.concept / split, args.seeds, args.guidance, args.concept)
            text = "; ".join(f"{k} {v:.3f}" for k, v in rows.items())
            print(f"{label:<12} {split:<7}: {text}  [{time.perf_counter() - started:.0f} s]")


if __name__ == "__main__":
    main()
