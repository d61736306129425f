"""Train a DDPM with lesson 05's trainer, from a terminal, on one GPU, several GPUs or several machines.

The notebook and this script run the same `course_utils.training.train`. Every field of TrainingConfig is an option
(`--learning_rate 2e-4`, `--no-use_ema`, ...); `--preset` picks the starting values. Run from the repository root.

  # one GPU (or the CPU): the 128 px model of diffusers' "Train a diffusion model" tutorial, \
on the butterflies (the shipped emoji set when offline)
  accelerate launch scripts/train_ddpm.py --preset full --dataset butterflies

  # all GPUs of one machine (here 4): each GPU takes its own batch of --train_batch_size images
  accelerate launch --multi_gpu --num_processes 4 scripts/train_ddpm.py --preset full --dataset butterflies

  # two machines with 8 GPUs each: run on both, with --machine_rank 0 on the first and 1 on the second
  accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank 0 \\
      --main_process_ip 10.0.0.1 --main_process_port 29500 scripts/train_ddpm.py --preset full --dataset flowers

  # continue a stopped run (Ctrl-C saves a checkpoint first) with the same options plus:
  accelerate launch scripts/train_ddpm.py --preset full --dataset butterflies --resume latest

  # a quick check of the distributed path on a laptop: two CPU processes (gloo), the tiny model, 20 steps.
  # (accelerate launch --cpu starts one process only; torchrun starts several, and accelerate picks them up)
  torchrun --nproc_per_node 2 scripts/train_ddpm.py --preset smoke --max_steps 20 \\
      --output_dir outputs/ddpm-cpu-check --overwrite_output_dir

`accelerate config` once saves your launch settings, so that `accelerate launch scripts/train_ddpm.py ...` is enough.
With N processes and gradient accumulation A, each optimizer step sees N x A x train_batch_size images; the number of
steps per epoch shrinks by N x A, so you may want a larger learning rate or fewer epochs. Results (model, samples/,
checkpoints/, logs/ for `tensorboard --logdir <output_dir>/logs`) go to --output_dir.
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

import course_utils  # noqa: E402  (must come before any Hugging Face import: it configures the hub)
from course_utils.training import TrainingConfig  # noqa: E402

_PARSERS = {"int": int, "float": float, "str": str}


def _option(parser: argparse.ArgumentParser, f) -> None:
    """Add --<field> for one TrainingConfig field, typed from its annotation."""
    kind = str(f.type).replace(" ", "")
    name = f"--{f.name}"
    if kind == "bool":
        parser.add_argument(name, action=argparse.BooleanOptionalAction, default=None)
    elif kind == "tuple":
        parser.add_argument(name, nargs="+", default=None, type=int if f.name == "block_out_channels" else str)
    else:
        parse = _PARSERS[kind.split("|")[0]]
        if "None" in kind:  # e.g. --max_steps none: back to "no limit"
            parse = _or_none(parse)
        parser.add_argument(name, type=parse, default=None, help="'none' for no value" if "None" in kind else None)


def _or_none(parse):
    """An argparse type that reads 'none' as None and anything else with `parse`."""

    def convert(text: str):
        return None if text.lower() == "none" else parse(text)

    convert.__name__ = parse.__name__  # argparse names the type in its error messages
    return convert


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options: --preset, --dataset, --resume, --stop_at_step and one per TrainingConfig field."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--preset",
        choices=("smoke", "full"),
        default=None,
        help="starting values: 'full' (the 128 px model) or 'smoke' (tiny, CPU); default from COURSE_MODE/hardware",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="'emoji' (shipped), 'emoji-faces' (its ~100 yellow faces), 'flowers', 'butterflies', a hub id or a "
        "local imagefolder; default: butterflies in full mode, emoji in smoke mode",
    )
    parser.add_argument("--resume", default=None, help="'latest' or a checkpoint folder")
    parser.add_argument("--stop_at_step", type=int, default=None, help="pause after this step (saves a checkpoint)")
    config_options = parser.add_argument_group("TrainingConfig fields (default: the preset's value)")
    for f in fields(TrainingConfig):
        _option(config_options, f)
    args = parser.parse_args(argv)
    args._argv = sys.argv[1:] if argv is None else list(argv)  # to tell "--max_steps none" from "not given"
    return args


def config_from_args(args: argparse.Namespace, mode: str) -> TrainingConfig:
    """The preset for `mode` with every option given on the command line applied."""
    names = {f.name for f in fields(TrainingConfig)}
    given = {a[2:].split("=")[0] for a in (args._argv or []) if a.startswith("--")}
    overrides = {k: v for k, v in vars(args).items() if k in names and (v is not None or k in given)}
    return TrainingConfig.for_mode(mode, **overrides)


def main(argv: list[str] | None = None) -> int:
    """Set up the course, load and transform the dataset, train; exit code 130 after Ctrl-C (checkpoint saved)."""
    args = parse_args(argv)
    main_process = os.environ.get("RANK", "0") == "0"
    with contextlib.redirect_stdout(sys.stdout if main_process else io.StringIO()):  # one status block, not one per GPU
        course = course_utils.setup(mode=args.preset)
    from course_utils.data import with_transform
    from course_utils.training import process_state, train
    from course_utils.training.datasets import load_training_dataset

    config = config_from_args(args, course.mode)
    name = args.dataset or ("butterflies" if course.mode == "full" else "emoji")
    with process_state().main_process_first():  # one process downloads and caches; the others then read the cache
        dataset = load_training_dataset(name, hub_ok=course.hub_ok)
    # Flips happen in the trainer (from its per-step generator), so a resumed run sees the same ones.
    dataset = with_transform(dataset, config.image_size, flip=False)
    try:
        result = train(config, dataset, resume=args.resume, stop_at_step=args.stop_at_step)
    except KeyboardInterrupt as stopped:
        if main_process:
            print(f"\n{stopped}", file=sys.stderr)
        return 130
    if main_process:
        where = result.model_dir or result.checkpoint
        print(f"done: step {result.step} of {result.total_steps} in {result.seconds:.0f} s; saved in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
