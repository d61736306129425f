"""Lesson 04's exercise checks accept a correct answer, reject wrong ones with a useful hint, and treat None as
'not attempted'."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from course_utils.exercises.lesson04_datasets import check_animals, check_preprocess, check_to_pixels
from course_utils.hub_datasets import load_image_dataset
from course_utils.images import to_rgb


@pytest.fixture(scope="module")
def emoji():
    return load_image_dataset("emoji", verbose=False)


def test_check_animals(emoji, capsys):
    assert check_animals(None, emoji) is False and "Not attempted" in capsys.readouterr().out
    animals = emoji.filter(lambda group: group == "Animals & Nature", input_columns="group")
    assert check_animals(animals, emoji) is True
    assert check_animals(animals.select(range(10)), emoji) is False and "slice it" in capsys.readouterr().out
    mammals_and_food = emoji.filter(lambda g: g in ("Animals & Nature", "Food & Drink"), input_columns="group")
    assert check_animals(mammals_and_food, emoji) is False and "Food & Drink" in capsys.readouterr().out
    assert check_animals(["dog"], emoji) is False


def test_check_preprocess(capsys):
    size = 32
    correct = transforms.Compose(
        [
            transforms.Lambda(to_rgb),
            transforms.Resize((size, size)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.5], [0.5]),
        ]
    )
    assert check_preprocess(None, size) is False
    assert check_preprocess(correct, size) is True
    no_normalize = transforms.Compose(
        [transforms.Lambda(to_rgb), transforms.Resize((size, size)), transforms.ToTensor()]
    )
    assert check_preprocess(no_normalize, size) is False and "Normalize" in capsys.readouterr().out
    no_rgb = transforms.Compose(
        [transforms.Resize((size, size)), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]
    )
    assert check_preprocess(no_rgb, size) is False and "RGB" in capsys.readouterr().out
    wrong_size = transforms.Compose(
        [transforms.Lambda(to_rgb), transforms.Resize(size), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]
    )
    assert check_preprocess(wrong_size, size) is False and f"Resize(({size}, {size}))" in capsys.readouterr().out
    black_background = transforms.Compose(
        [
            transforms.Lambda(lambda im: im.convert("RGB")),
            transforms.Resize((size, size)),
            transforms.ToTensor(),
            transforms.Normalize([0.5], [0.5]),
        ]
    )
    assert check_preprocess(black_background, size) is False and "white background" in capsys.readouterr().out


def test_check_to_pixels(capsys):
    def correct(x):
        array = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(array)

    def truncating_version(x):  # truncation instead of rounding: off by at most 1, which is fine
        return Image.fromarray(((x.permute(1, 2, 0) + 1.0) * 127.5).type(torch.uint8).numpy())

    def forgot_plus_one(x):
        return Image.fromarray((x * 255).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())

    def channels_first(x):
        return Image.fromarray(((x + 1) * 127.5).to(torch.uint8).numpy()[0])

    assert check_to_pixels(None) is False
    assert check_to_pixels(correct) is True
    assert check_to_pixels(truncating_version) is True
    assert check_to_pixels(forgot_plus_one) is False and "grey ramp" in capsys.readouterr().out
    assert check_to_pixels(channels_first) is False and "RGB" in capsys.readouterr().out

    def reshaped(x):  # the right shape, the wrong numbers in each pixel
        return Image.fromarray(((x + 1) * 127.5).round().to(torch.uint8).reshape(x.shape[1], x.shape[2], 3).numpy())

    capsys.readouterr()
    assert check_to_pixels(reshaped) is False and "permute" in capsys.readouterr().out
    assert check_to_pixels(lambda x: np.zeros((4, 16, 3))) is False and "Image.fromarray" in capsys.readouterr().out


def test_show_draws_a_one_channel_image_in_grey():
    """Lesson 04 shows an L-mode image: it must look grey, not painted with matplotlib's default colour map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_utils.images import show

    plt.close("all")
    show([Image.new("L", (8, 8), 200), Image.new("RGB", (8, 8), (200, 0, 0))])
    grey, colour = (ax.images[0] for ax in plt.gcf().axes[:2])
    assert grey.get_cmap().name == "gray" and grey.get_clim() == (0, 255)  # 200 stays light grey
    assert colour.get_array().shape == (8, 8, 3)
    plt.close("all")


def test_flip_demo_leaves_out_groups_that_exist(emoji):
    """The notebook's flip demo skips the emoji groups where a flip is wrong; a renamed group would let a flag through
    unnoticed."""
    import ast

    from notebook_code import notebook_cell

    source = notebook_cell("04_datasets.ipynb", "no_flip = (")
    no_flip = ast.literal_eval(source.split("no_flip = ")[1].split("\n")[0])
    assert set(no_flip) == {"Flags", "Symbols"} and set(no_flip) <= set(emoji["group"])
