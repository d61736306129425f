"""The drawing helpers show their figure once: they return nothing, so a cell that ends with one of them does not
draw the figure a second time as the cell's result (which Jupyter does with a returned matplotlib Figure)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from course_utils.attention import show_word_maps  # noqa: E402
from course_utils.images import show  # noqa: E402
from course_utils.noise_schedule import plot_noise_schedule  # noqa: E402
from course_utils.training import (  # noqa: E402
    plot_loss,
    runs,  # noqa: E402
    show_samples,
)


def picture(seed: int = 0, size: int = 16) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


@pytest.fixture(autouse=True)
def no_open_figures():
    plt.close("all")
    yield
    plt.close("all")


def samples_folder(tmp_path):
    folder = tmp_path / runs.SAMPLES
    folder.mkdir()
    for step in (10, 20):
        picture(step).save(folder / f"step-{step:06d}.png")
    return tmp_path


HISTORY = [{"step": s, "loss": 1.0 / s, "lr": 1e-3, "epoch": 0} for s in range(1, 21)]
CALLS = {
    "show": lambda tmp: show([picture(0), picture(1)], titles=["a", "b"]),
    "plot_noise_schedule": lambda tmp: plot_noise_schedule(torch.linspace(1, 0, 10), torch.linspace(0, 1, 10), [9, 0]),
    "plot_loss": lambda tmp: plot_loss(HISTORY),
    "show_samples": lambda tmp: show_samples(samples_folder(tmp)),
    "show_word_maps": lambda tmp: show_word_maps(picture(2), {"cat": torch.rand(4, 4), "hat": torch.rand(4, 4)}),
}
# What each helper draws: (axes holding an image, axes holding lines)
DRAWN = {
    "show": (2, 0),
    "plot_noise_schedule": (0, 1),
    "plot_loss": (0, 1),
    "show_samples": (2, 0),
    "show_word_maps": (3, 0),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_drawing_helpers_draw_one_figure_and_return_nothing(name, tmp_path):
    assert CALLS[name](tmp_path) is None
    assert plt.get_fignums() == [1], "exactly one figure drawn"
    axes = plt.gcf().axes
    images, lines = DRAWN[name]
    assert len([ax for ax in axes if ax.images]) == images
    assert len([ax for ax in axes if ax.get_lines()]) >= lines


def test_a_cell_ending_with_show_displays_one_picture():
    """Run the case in a real Jupyter kernel with the inline backend, as a learner's notebook does."""
    from nbconvert.preprocessors import ExecutePreprocessor

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "%matplotlib inline\nfrom PIL import Image\nfrom course_utils.images import show\n"
            "show([Image.new('RGB', (8, 8)), Image.new('RGB', (8, 8), 'red')], titles=['black', 'red'])"
        )
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    ExecutePreprocessor(timeout=120, kernel_name="python3").preprocess(nb)
    pictures = [out for out in nb.cells[0].outputs if "image/png" in out.get("data", {})]
    assert len(pictures) == 1, [out["output_type"] for out in nb.cells[0].outputs]
