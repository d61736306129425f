"""Lesson 05's DDPM training, in one import path: `from course_utils.training.loop import TrainingConfig, train`.

- config: `TrainingConfig` (every setting of a run, with `smoke` and `full` presets) and the UNet it describes;
- runtime: what every trainer shares (precision, accelerator, step generator, Ctrl-C, atomic checkpoints, resume);
- loop: `train()` and its named pieces (loss, optimizer, EMA, the per-step plan);
- lora: lesson 08's resumable LoRA trainer (scripts/train_lora.py runs it);
- runs: the files of a run (checkpoints, history, the saved pipeline);
- plots: loss curves and sample grids."""

from course_utils.training import runs
from course_utils.training.config import TrainingConfig, make_unet
from course_utils.training.loop import (
    TrainResult,
    check_training_inputs,
    collate_images,
    diffusion_loss,
    random_flips,
    sample_images,
    train,
)
from course_utils.training.plots import moving_average, plot_loss, show_samples
from course_utils.training.runtime import choose_mixed_precision, process_state, step_generator

__all__ = [
    "TrainingConfig",
    "TrainResult",
    "make_unet",
    "choose_mixed_precision",
    "train",
    "diffusion_loss",
    "random_flips",
    "step_generator",
    "check_training_inputs",
    "collate_images",
    "process_state",
    "sample_images",
    "moving_average",
    "plot_loss",
    "show_samples",
    "runs",
]
