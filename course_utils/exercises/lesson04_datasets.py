"""Checks for lesson 04's exercises: picking a subset with filter, writing the training transform, and undoing the
normalisation to get pixels back."""

from __future__ import annotations

from typing import Any, Callable

from PIL import Image

from course_utils.exercises import not_attempted, verdict

ANIMALS = "Animals & Nature"


def check_animals(subset: Any, full: Any) -> bool:
    """Pass when `subset` holds exactly the rows of `full` (the emoji dataset) whose group is 'Animals & Nature'."""
    if subset is None:
        return not_attempted("the animals-only subset")
    if not hasattr(subset, "column_names") or "group" not in subset.column_names:
        return verdict(False, "", f"expected a datasets.Dataset with a 'group' column, got {type(subset).__name__}.")
    groups = subset["group"]
    wrong = sorted({g for g in groups if g != ANIMALS})
    expected = sum(1 for g in full["group"] if g == ANIMALS)
    if wrong:
        return verdict(False, "", f"the subset still has rows from {wrong}: keep only group == {ANIMALS!r}.")
    if len(groups) != expected:
        return verdict(
            False, "", f"{len(groups)} rows, but the dataset has {expected} in {ANIMALS!r}: did you slice it too?"
        )
    return verdict(True, f"{expected} animal and nature emoji, nothing else (e.g. {subset['text'][0]!r}).", "")


def _probe_image(size: int = 24) -> Image.Image:
    """A non-square RGBA test image: left half opaque dark red, right half transparent."""
    image = Image.new("RGBA", (size * 2, size), (0, 0, 0, 0))
    image.paste((120, 0, 0, 255), (0, 0, size, size))
    return image


def check_preprocess(transform: Callable | None, size: int) -> bool:
    """Pass when `transform` turns any PIL image into a (3, size, size) float tensor in [-1, 1]
    like preprocess(size)."""
    import torch

    from course_utils.data import preprocess

    if transform is None:
        return not_attempted("your preprocess transform")
    image = _probe_image()
    try:
        out = transform(image)
    except Exception as err:
        return verdict(False, "", f"it raised {type(err).__name__}: {err}. Does it convert the image to RGB first?")
    if not isinstance(out, torch.Tensor):
        return verdict(
            False, "", f"it returned a {type(out).__name__}; end with ToTensor() and Normalize([0.5], [0.5])."
        )
    if out.ndim != 3 or out.shape[0] != 3:
        return verdict(False, "", f"shape {tuple(out.shape)}: expected 3 channels first. Convert RGBA to RGB (to_rgb).")
    if tuple(out.shape[1:]) != (size, size):
        return verdict(
            False, "", f"shape {tuple(out.shape)}: expected (3, {size}, {size}). Use Resize(({size}, {size}))."
        )
    low, high = out.min().item(), out.max().item()
    if low >= 0:
        return verdict(
            False, "", f"values in [{low:.2f}, {high:.2f}]: still ToTensor's [0, 1]. Add Normalize([0.5], [0.5])."
        )
    reference = preprocess(size, flip=False)(image)
    if not (torch.allclose(out, reference, atol=1e-4) or torch.allclose(out, reference.flip(-1), atol=1e-4)):
        diff = min((out - reference).abs().max().item(), (out - reference.flip(-1)).abs().max().item())
        return verdict(
            False,
            "",
            f"shape and range are right but pixels differ from preprocess({size}) by up to {diff:.2f}: "
            "check the order (RGB, Resize, flip, ToTensor, Normalize) and the white background.",
        )
    return verdict(
        True, f"(3, {size}, {size}) in [{low:.0f}, {high:.0f}], pixel for pixel what preprocess({size}) gives.", ""
    )


def _looks_reshaped(to_pixels: Callable) -> bool:
    """True when a colour test card comes back as (H, W, C) = reshape of (C, H, W), not a permute."""
    import numpy as np
    import torch

    card = torch.stack([torch.linspace(-1, 1, 16).repeat(4, 1), torch.full((4, 16), 0.5), torch.full((4, 16), -0.5)])
    try:
        got = np.asarray(to_pixels(card), dtype=np.float32)
    except Exception:
        return False
    right = ((card.permute(1, 2, 0) + 1) * 127.5).numpy()
    reshaped = ((card.reshape(4, 16, 3) + 1) * 127.5).numpy()
    if got.shape != right.shape:
        return False
    return np.abs(got - reshaped).max() <= 1.5 < np.abs(got - right).max()


def check_to_pixels(to_pixels: Callable | None) -> bool:
    """Pass when `to_pixels` maps a (3, H, W) tensor in [-1, 1] back to a PIL RGB image (-1 -> 0, 1 -> 255)."""
    import torch

    if to_pixels is None:
        return not_attempted("to_pixels")
    ramp = torch.linspace(-1, 1, 16).repeat(3, 4, 1)  # (3, 4, 16): a grey ramp from black to white
    try:
        image = to_pixels(ramp)
    except Exception as err:
        return verdict(False, "", f"it raised {type(err).__name__}: {err}")
    if not isinstance(image, Image.Image):
        return verdict(
            False,
            "",
            f"it returned a {type(image).__name__}; end with Image.fromarray(array) on a uint8 (H, W, 3) array.",
        )
    if image.size != (16, 4) or image.mode != "RGB":
        return verdict(
            False,
            "",
            f"got a {image.mode} image of {image.size}; expected RGB (16, 4): permute (C, H, W) -> (H, W, C).",
        )
    if _looks_reshaped(to_pixels):
        return verdict(
            False,
            "",
            "the channels are scrambled: reshape re-reads the numbers in memory order; "
            "move the channel axis with x.permute(1, 2, 0) instead.",
        )
    row = [image.getpixel((x, 0))[0] for x in range(16)]
    expected = [round((v + 1) * 127.5) for v in torch.linspace(-1, 1, 16).tolist()]
    if max(abs(a - b) for a, b in zip(row, expected)) > 1:
        hint = (
            "all dark: did you multiply by 255 before adding 1?"
            if max(row) < 200
            else "compute (x + 1) * 127.5, or (x / 2 + 0.5) * 255"
        )
        return verdict(
            False,
            "",
            f"the grey ramp came out as {row[:4]}...{row[-2:]}, expected {expected[:4]}...{expected[-2:]}: {hint}.",
        )
    return verdict(True, "-1 -> 0 and 1 -> 255: you undid Normalize exactly as the pipelines do.", "")
