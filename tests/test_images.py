"""Image helpers: exact round trips, the pipeline's own conversion, grids and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils.checks.values import require_multiple_of_8
from course_utils.images import image_grid, latents_to_pil, load_image, pil_to_tensor, tensor_to_pil


def random_image(w=40, h=24, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_pil_tensor_round_trip_is_exact():
    image = random_image()
    tensor = pil_to_tensor(image)
    assert tensor.shape == (1, 3, 24, 40) and tensor.min() >= -1 and tensor.max() <= 1
    assert np.array_equal(np.asarray(tensor_to_pil(tensor)[0]), np.asarray(image))


def test_tensor_to_pil_matches_the_manual_formula():
    t = torch.rand(2, 3, 8, 8) * 2.4 - 1.2  # includes values outside [-1, 1]: must be clamped
    manual = ((t / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
    ours = np.stack([np.asarray(im) for im in tensor_to_pil(t)])
    assert np.array_equal(ours, manual)
    assert len(tensor_to_pil(t[0])) == 1
    with pytest.raises(ValueError, match="shape"):
        tensor_to_pil(torch.zeros(3, 8))


def test_latents_to_pil_uses_the_config_scaling_factor():
    class FakeVae:
        dtype = torch.float32

        class config:
            scaling_factor = 0.5

        def decode(self, latents, return_dict=False):
            self.seen = latents
            return (torch.zeros(latents.shape[0], 3, 8, 8),)

    vae = FakeVae()
    images = latents_to_pil(vae, torch.ones(1, 4, 1, 1))
    assert torch.equal(vae.seen, torch.full((1, 4, 1, 1), 2.0)) and images[0].size == (8, 8)


def test_grid_shapes_and_padding():
    images = [random_image(seed=i) for i in range(5)]
    assert image_grid(images).size == (200, 24)
    assert image_grid(images, rows=2).size == (120, 48)
    assert image_grid(images, cols=2).size == (80, 72)
    with pytest.raises(ValueError, match="holds 4 images"):
        image_grid(images, rows=2, cols=2)
    with pytest.raises(ValueError, match="no images"):
        image_grid([])


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_image(tmp_path / "missing.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(broken)
    good = tmp_path / "good.png"
    random_image().convert("L").save(good)
    assert load_image(good).mode == "RGB"


def test_multiple_of_8_error_names_the_argument_and_a_fix():
    assert require_multiple_of_8(512, 768) == (512, 768)
    with pytest.raises(ValueError, match=r"width=500.*Try width=504"):
        require_multiple_of_8(512, 500)
    with pytest.raises(ValueError, match="height=0"):
        require_multiple_of_8(0, 512)
