"""Pictures of a training run that work anywhere matplotlib does (TensorBoard may not load in Colab or on a
remote server): the loss and learning-rate curves, and the sample grids saved along the way."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from course_utils.images import display_figure
from course_utils.training import runs


def _history(run) -> list[dict]:
    """A history list from a TrainResult, an output folder, or the list itself."""
    if hasattr(run, "history"):
        return run.history
    if isinstance(run, (str, Path)):
        return runs.load_history(run)
    return list(run)


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Mean of the last `window` values at each point (fewer at the start), to see the trend in a noisy loss."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_loss(run, window: int | None = None, marks: dict[str, int] | None = None, title: str = "Training loss"):
    """Loss per step (thin), its moving average (thick) and the learning rate (right axis)."""
    import matplotlib.pyplot as plt

    history = _history(run)
    if not history:
        raise ValueError("No steps recorded yet: train first (the history fills one entry per optimizer step).")
    steps = [h["step"] for h in history]
    losses = [h["loss"] for h in history]
    window = window or min(len(losses), max(5, len(losses) // 20))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(steps, losses, color="tab:blue", alpha=0.35, linewidth=1, label="loss per step")
    ax.plot(steps, moving_average(losses, window), color="tab:blue", linewidth=2, label=f"mean of {window} steps")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("MSE(predicted noise, noise)")
    ax.set_yscale("log")
    lr_ax = ax.twinx()
    lr_ax.plot(steps, [h["lr"] for h in history], color="tab:orange", linewidth=1.5, label="learning rate")
    lr_ax.set_ylabel("learning rate", color="tab:orange")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    for label, step in (marks or {}).items():
        ax.axvline(step, color="gray", linestyle="--", linewidth=1)
        ax.annotate(
            label, (step, ax.get_ylim()[1]), textcoords="offset points", xytext=(3, -12), fontsize=9, color="gray"
        )
    handles = ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    display_figure(fig)


def show_samples(output_dir: str | Path, steps: Sequence[int] | None = None, max_grids: int = 4, size: float = 3.2):
    """The sample grids saved during training, side by side, titled with their step."""
    import matplotlib.pyplot as plt
    from PIL import Image

    grids = runs.sample_grids(output_dir)
    if not grids:
        raise FileNotFoundError(
            f"No sample grids in {Path(output_dir) / runs.SAMPLES}: they are saved every save_image_steps."
        )
    chosen = list(steps) if steps is not None else sorted(grids)
    if len(chosen) > max_grids:  # evenly spread, always with the last one
        chosen = [chosen[round(i * (len(chosen) - 1) / (max_grids - 1))] for i in range(max_grids)]
    fig, axes = plt.subplots(1, len(chosen), figsize=(size * len(chosen), size + 0.3), squeeze=False)
    for ax, step in zip(axes[0], chosen):
        ax.imshow(Image.open(grids[step]))
        ax.set_title(f"step {step}")
        ax.set_axis_off()
    fig.suptitle("Samples (EMA weights, the same starting noise each time)")
    fig.tight_layout()
    display_figure(fig)
