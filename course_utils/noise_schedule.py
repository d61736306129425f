"""Plot of a diffusion noise schedule: how much of the clean image (signal) and how much noise a noisy sample holds at
each timestep. Lesson 01 computes the two curves from `scheduler.alphas_cumprod`; this module only draws them."""

from __future__ import annotations

from typing import Mapping

import torch

from course_utils.images import display_figure

TICK_COLORS = ("tab:green", "tab:purple", "tab:brown", "tab:gray")  # not the blue/red of the two curves


def _as_1d(name: str, values) -> torch.Tensor:
    """`values` as a 1-D float tensor, or a ValueError that names the argument."""
    tensor = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    if tensor.ndim != 1 or tensor.numel() < 2:
        raise ValueError(
            f"{name}: expected a 1-D sequence with one value per timestep, got shape {tuple(tensor.shape)}."
        )
    return tensor


def _timestep_sets(used_timesteps, length: int) -> dict[str, torch.Tensor]:
    """Normalise `used_timesteps` (None, one sequence, or {label: sequence})
    to {label: 1-D long tensor}, range-checked."""
    if used_timesteps is None:
        return {}
    if not isinstance(used_timesteps, Mapping):
        used_timesteps = {"timesteps the sampler visits": used_timesteps}
    sets = {}
    for label, values in used_timesteps.items():
        steps = torch.as_tensor(values).long().flatten().cpu()
        if steps.numel() and (steps.min() < 0 or steps.max() >= length):
            raise ValueError(
                f"used_timesteps[{label!r}] must lie in 0..{length - 1}, got {int(steps.min())}..{int(steps.max())}."
            )
        sets[str(label)] = steps
    return sets


def plot_noise_schedule(signal, noise, used_timesteps=None, title: str = ""):
    """Draw signal and noise scale against the timestep, with a row of ticks per sampler's timesteps.

    `signal[t]` is sqrt(alphas_cumprod[t]) and `noise[t]` is sqrt(1 - alphas_cumprod[t]): a noisy sample at step t is
    signal[t] * clean_image + noise[t] * gaussian_noise. `used_timesteps` is `scheduler.timesteps` after
    `set_timesteps`, or a dict {label: timesteps} to compare samplers; each set is drawn as a row of ticks along the
    bottom, so you see where on the schedule each denoising step lands.
    """
    import matplotlib.pyplot as plt

    signal, noise = _as_1d("signal", signal), _as_1d("noise", noise)
    if signal.shape != noise.shape:
        raise ValueError(
            f"signal has {signal.numel()} values but noise has {noise.numel()}: pass one value per timestep for both."
        )
    sets = _timestep_sets(used_timesteps, signal.numel())
    steps = torch.arange(signal.numel())
    fig, ax = plt.subplots(figsize=(7, 3.6 + 0.25 * len(sets)))
    ax.plot(steps, signal, label="signal √ᾱ_t: share of the clean image", color="tab:blue", linewidth=2)
    ax.plot(steps, noise, label="noise √(1−ᾱ_t): share of Gaussian noise", color="tab:red", linewidth=2)
    for row, (label, used) in enumerate(sets.items()):
        y = -0.08 * (row + 1)
        color = TICK_COLORS[row % len(TICK_COLORS)]
        ax.plot(
            used, torch.full((used.numel(),), y), "|", markersize=9, color=color, label=f"{label}: {used.numel()} steps"
        )
    ax.set_xlabel(f"timestep t (0 = clean image, {signal.numel() - 1} = almost pure noise)")
    ax.set_ylabel("scale")
    ax.set_ylim(-0.08 * (len(sets) + 1), 1.05)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])  # the tick rows below 0 are not values
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    display_figure(fig)
