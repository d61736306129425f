"""Train a LoRA for a Stable Diffusion 1.x pipeline on a folder of captioned images (lesson 08).

Captions come from the folder's metadata.jsonl (imagefolder layout: file_name, text), else from a
.txt next to each image, else from --default_caption (DreamBooth style: "a photo of sks dog").
Run from the repository root:

  # the course's emoji-sd on the shipped inverted emoji, with prior preservation (a CPU is enough:
  # data/models/emoji-sd-lora-inverted/README.md gives the time)
  accelerate launch --cpu scripts/train_lora.py --data_dir data/lora-concepts/inverted/train \\
      --prior_dir data/emoji/train --prior_batch_size 8 --output_dir outputs/lora-inverted \\
      --resolution 64 --max_train_steps 800 --train_batch_size 8 --save_fp16

  # SD 1.5 on your own pictures (a GPU: bf16 where it has bfloat16, fp16 elsewhere)
  accelerate launch scripts/train_lora.py \\
      --pretrained stable-diffusion-v1-5/stable-diffusion-v1-5 --data_dir my_dog/ \\
      --default_caption "a photo of sks dog" --output_dir outputs/lora-sks-dog --resolution 512 \\
      --rank 8 --alpha 8 --learning_rate 1e-4 --max_train_steps 800 --gradient_checkpointing

  # continue a stopped run (Ctrl-C saves a checkpoint first): the same options plus
  #   --resume latest

The LoRA is saved as <output_dir>/pytorch_lora_weights.safetensors, which
`pipe.load_lora_weights(output_dir)` loads. With several processes (`accelerate launch
--multi_gpu`), each draws its own batch and the gradients are averaged.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import course_utils  # noqa: E402  (before any Hugging Face import: it configures the hub)
from course_utils.training.lora import LoraTrainingConfig, train_lora  # noqa: E402

_TYPES = {"int": int, "float": float, "str": str}


def _option(group: argparse._ArgumentGroup, f) -> None:
    """--<field> for one LoraTrainingConfig field, typed from its annotation."""
    kind = str(f.type).replace(" ", "")
    if f.name == "pretrained":
        return
    if kind == "bool":
        group.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=f.default)
    elif kind == "tuple":
        group.add_argument(f"--{f.name}", nargs="+", default=list(f.default))
    else:
        group.add_argument(
            f"--{f.name}",
            type=_TYPES[kind.split("|")[0]],
            default=None if f.name in ("data_dir", "output_dir") else f.default,
            required=f.name in ("data_dir", "output_dir"),
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """--pretrained, --resume, --stop_at_step and one option per LoraTrainingConfig field."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pretrained",
        default=None,
        help="a hub id or folder; default: the course's 'sd15' (emoji-sd in smoke mode)",
    )
    parser.add_argument("--resume", default=None, help="'latest' or a checkpoint folder")
    parser.add_argument("--stop_at_step", type=int, default=None, help="pause after this step")
    group = parser.add_argument_group("LoraTrainingConfig fields")
    for f in fields(LoraTrainingConfig):
        _option(group, f)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Set up the course, train, report; exit code 130 after Ctrl-C (checkpoint saved)."""
    args = parse_args(argv)
    quiet = os.environ.get("RANK", "0") != "0"
    with contextlib.redirect_stdout(io.StringIO() if quiet else sys.stdout):  # one status block
        course = course_utils.setup()
    names = {f.name for f in fields(LoraTrainingConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["target_modules"] = tuple(values["target_modules"])
    values["pretrained"] = str(args.pretrained or course.model("sd15"))
    config = LoraTrainingConfig(**values)
    result = train_lora(config, resume=args.resume, stop_at_step=args.stop_at_step)
    if quiet:
        return 0
    if result.lora_path is None:
        print(f"stopped at step {result.step} of {result.total_steps}; continue with --resume latest")
        return 130 if result.step < (args.stop_at_step or result.total_steps) else 0
    print(
        f"done: {result.step} steps in {result.seconds:.0f} s of training "
        f"({result.mixed_precision}); LoRA saved in {result.lora_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
