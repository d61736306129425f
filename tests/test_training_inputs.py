"""Training values that would make a run diverge or crash late are refused up front, and a run whose
loss turns NaN or infinite stops with the likely cause instead of saving a broken model."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_training import ShapeImages, tiny_config

from course_utils.training import TrainingConfig, runs, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(max_grad_norm=-1), r"max_grad_norm=-1: expected a finite number > 0"),
        (dict(max_grad_norm=0), r"max_grad_norm=0: expected"),
        (dict(max_grad_norm=float("nan")), r"max_grad_norm=nan"),
        (dict(learning_rate=float("inf")), r"learning_rate=inf: expected a finite number > 0"),
        (dict(learning_rate=float("nan")), r"learning_rate=nan"),
        (dict(learning_rate="1e-4"), r"learning_rate='1e-4' is text: .*without quotes"),
        (dict(learning_rate=True), r"learning_rate=True"),
        (dict(ema_max_decay=1.5), r"ema_max_decay=1.5: expected a finite number >= 0 and < 1"),
        (dict(ema_max_decay=1.0), r"ema_max_decay=1.0"),
        (dict(adam_weight_decay=-0.01), r"adam_weight_decay=-0.01: expected a finite number >= 0"),
        (dict(ema_power=0), r"ema_power=0"),
        (dict(ema_inv_gamma=-1.0), r"ema_inv_gamma=-1.0"),
        (dict(seed=-3), r"seed=-3: expected a whole number >= 0"),
        (dict(seed=1.5), r"seed=1.5"),
        (dict(dataloader_num_workers=-1), r"dataloader_num_workers=-1"),
        (dict(output_dir=""), r"output_dir='': expected a folder path"),
        (dict(lr_warmup_steps=2.5), r"lr_warmup_steps=2.5"),
    ],
)
def test_invalid_training_values_are_refused_with_the_field_named(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig.smoke(**changes)


def test_a_run_whose_loss_turns_non_finite_stops_and_saves_no_model(tmp_path):
    config = tiny_config(
        tmp_path,
        learning_rate=1e6,
        max_grad_norm=1e9,
        max_steps=40,
        logging_steps=1,
        lr_warmup_steps=0,
        checkpointing_steps=1000,
        use_ema=False,
    )
    with pytest.raises(
        FloatingPointError,
        match=r"The loss became (nan|inf|-inf) at step \d+.*"
        r"learning_rate=1e\+06 too high.*max_grad_norm=1e\+09",
    ):
        train(config, ShapeImages(8))
    assert not (Path(config.output_dir) / runs.MODEL_FILES[0]).exists()
    assert not runs.checkpoints(config.output_dir)


def test_images_in_zero_one_are_refused_before_training(tmp_path):
    import torch

    class ZeroOne(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> dict:
            return {"images": torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i))}

    with pytest.raises(ValueError, match=r"look like ToTensor\(\)'s \[0, 1\].*Normalize"):
        train(tiny_config(tmp_path), ZeroOne())
