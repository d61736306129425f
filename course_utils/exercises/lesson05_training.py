"""Checks for lesson 05's exercises: the forward process written out, counting optimizer steps, one EMA update."""

from __future__ import annotations

from typing import Callable

import torch

from course_utils.exercises import not_attempted, verdict
from course_utils.i18n import tr


def check_add_noise(fn: Callable | None, noise_scheduler) -> bool:
    """Pass when fn(x0, noise, t) gives what noise_scheduler.add_noise gives, at small, middle and large t."""
    if fn is None:
        return not_attempted(tr("add_noise written out with alphas_cumprod"))
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 100, 500, noise_scheduler.config.num_train_timesteps - 1])
    expected = noise_scheduler.add_noise(x0, noise, t)
    try:
        got = fn(x0, noise, t)
    except Exception as err:  # a learner's bug is a wrong answer, not a crash
        return verdict(False, "", tr("your function raised {error}: {err}", error=type(err).__name__, err=err))
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return verdict(
            False,
            "",
            tr(
                "expected a tensor of shape {shape}, got {got}",
                shape=tuple(expected.shape),
                got=getattr(got, "shape", type(got)),
            ),
        )
    worst = float((got - expected).abs().max())
    return verdict(
        worst < 1e-5,
        tr("Your forward process matches add_noise: x_t = sqrt(ᾱ_t)·x_0 + sqrt(1-ᾱ_t)·ε."),
        tr(
            "Off by up to {worst:.3g}. Hint: use the square roots of alphas_cumprod[t] and 1 - alphas_cumprod[t], "
            "shaped (-1, 1, 1, 1) so they multiply whole images.",
            worst=worst,
        ),
    )


def check_total_steps(
    answer: int | None, images: int, batch_size: int, accumulation: int, processes: int, epochs: int
) -> bool:
    """Pass when `answer` is the number of optimizer steps the trainer takes for this data and settings."""
    from course_utils.training.config import TrainingConfig

    if answer is None:
        return not_attempted(tr("the number of optimizer steps"))
    batches = -(-images // (batch_size * processes))  # batches each process sees per epoch (the last may be short)
    config = TrainingConfig.smoke(
        train_batch_size=batch_size, gradient_accumulation_steps=accumulation, num_epochs=epochs, max_steps=None
    )
    expected = config.total_steps(batches)
    return verdict(
        answer == expected,
        tr(
            "{expected} steps: {batches} batches per process per epoch, one step per {accumulation} batches "
            "(rounded up: the last, shorter group still makes a step), times {epochs} epochs.",
            expected=expected,
            batches=batches,
            accumulation=accumulation,
            epochs=epochs,
        ),
        tr(
            "{answer} is not it. Count the batches each process sees per epoch "
            "(images / (batch x processes), rounded up), "
            "then group them by the accumulation (rounded up), then multiply by the epochs.",
            answer=answer,
        ),
    )


def check_ema_update(fn: Callable | None) -> bool:
    """Pass when fn(shadow, weights, decay) is one EMA update as diffusers' EMAModel does it."""
    from diffusers.training_utils import EMAModel

    if fn is None:
        return not_attempted(tr("one EMA update"))
    g = torch.Generator().manual_seed(0)
    shadow, current = torch.randn(5, generator=g), torch.randn(5, generator=g)
    decay = 0.99
    param = torch.nn.Parameter(shadow.clone())
    ema = EMAModel([param], decay=decay, min_decay=decay)  # min_decay = decay: no warm-up, a fixed decay
    ema.optimization_step = 10  # past the first step, which just copies the weights
    param.data.copy_(current)
    ema.step([param])
    expected = ema.shadow_params[0]
    try:
        got = fn(shadow.clone(), current.clone(), decay)
    except Exception as err:
        return verdict(False, "", tr("your function raised {error}: {err}", error=type(err).__name__, err=err))
    ok = isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.allclose(got, expected, atol=1e-6)
    return verdict(
        ok,
        tr("That is EMAModel.step: the average keeps 99% of itself and takes 1% of the new weights."),
        tr("Not the same as EMAModel.step. The average moves a little (1 - decay) towards the current weights."),
    )
