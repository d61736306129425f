"""Lesson 05's DDPM training, in one import path: `from course_utils.training.loop import TrainingConfig, train`.

- config: `TrainingConfig` (every setting of a run, with `smoke` and `full` presets) and the UNet it describes;
- loop: `train()` and its named pieces (loss, optimizer, EMA, checkpoints, the per-step plan);
- runs: the files of a run (checkpoints, history, the saved pipeline);
- plots: loss curves and sample grids."""

from course_utils.training import runs
from course_utils.training.config import TrainingConfig, choose_mixed_precision, make_unet
from course_utils.training.loop import (
    TrainResult,
    check_training_inputs,
    collate_images,
    diffusion_loss,
    process_state,
    random_flips,
    sample_images,
    step_generator,
    train,
)
from course_utils.training.plots import moving_average, plot_loss, show_samples

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
