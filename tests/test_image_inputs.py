"""Photos load the same way as dataset images (transparency on white, 16-bit scaled down), and a
guidance scale that would silently change the picture is refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from course_utils.checks.pipeline_inputs import check_guidance, check_inputs
from course_utils.images import to_rgb
from course_utils.photos import load_photo


def _rgba(path):
    pixels = np.zeros((32, 32, 4), np.uint8)  # fully transparent black ...
    pixels[8:24, 8:24] = [200, 30, 30, 255]  # ... around an opaque red square
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def _gray16(path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    return path


def test_transparent_photo_areas_are_white_as_in_the_dataset_path(tmp_path):
    path = _rgba(tmp_path / "sticker.png")
    photo = np.asarray(load_photo(path))
    assert photo.shape == (32, 32, 3)
    assert (photo[0, 0] == 255).all() and (photo[16, 16] == [200, 30, 30]).all()
    assert np.array_equal(photo, np.asarray(to_rgb(Image.open(path))))


def test_16_bit_grayscale_photo_keeps_its_tones(tmp_path):
    photo = np.asarray(load_photo(_gray16(tmp_path / "scan.png"))).astype(int)
    assert photo.shape == (64, 64, 3) and photo[0, 0, 0] == 0 and photo[-1, -1, 0] == 255
    assert abs(photo.mean() - 127.5) < 2  # an even ramp from black to white, not 98% white
    assert (photo >= 250).mean() < 0.05


@pytest.mark.parametrize(
    "bad, error",
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (-2.0, ValueError),
        ("7.5", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_guidance_scale_that_is_not_a_finite_number_is_refused(bad, error):
    with pytest.raises(error, match="guidance_scale=.*expected a finite number >= 0"):
        check_guidance(bad)


def test_check_inputs_passes_a_good_guidance_scale_on():
    assert check_inputs("a cat", guidance_scale=7.5) == {"prompt": "a cat", "guidance_scale": 7.5}
    with pytest.raises(ValueError, match="guidance_scale=nan"):
        check_inputs("a cat", guidance_scale=float("nan"))
