"""Checks for lesson 04's exercises: picking a subset with filter, writing the training transform, and undoing the
normalisation to get pixels back."""

from __future__ import annotations

from typing import Any, Callable

from PIL import Image

from course_utils.exercises import not_attempted, verdict
from course_utils.i18n import tr

ANIMALS = "Animals & Nature"


def check_animals(subset: Any, full: Any) -> bool:
    """Pass when `subset` holds exactly the rows of `full` (the emoji dataset) whose group is 'Animals & Nature'."""
    if subset is None:
        return not_attempted(tr("the animals-only subset"))
    if not hasattr(subset, "column_names") or "group" not in subset.column_names:
        return verdict(
            False,
            "",
            tr("expected a datasets.Dataset with a 'group' column, got {kind}.", kind=type(subset).__name__),
        )
    groups = subset["group"]
    wrong = sorted({g for g in groups if g != ANIMALS})
    expected = sum(1 for g in full["group"] if g == ANIMALS)
    if wrong:
        return verdict(
            False,
            "",
            tr("the subset still has rows from {wrong}: keep only group == {group!r}.", wrong=wrong, group=ANIMALS),
        )
    if len(groups) != expected:
        return verdict(
            False,
            "",
            tr(
                "{rows} rows, but the dataset has {expected} in {group!r}: did you slice it too?",
                rows=len(groups),
                expected=expected,
                group=ANIMALS,
            ),
        )
    return verdict(
        True,
        tr(
            "{expected} animal and nature emoji, nothing else (e.g. {example!r}).",
            expected=expected,
            example=subset["text"][0],
        ),
        "",
    )


def _probe_image(size: int = 24) -> Image.Image:
    """A non-square RGBA test image: left half opaque dark red, right half transparent."""
    image = Image.new("RGBA", (size * 2, size), (0, 0, 0, 0))
    image.paste((120, 0, 0, 255), (0, 0, size, size))
    return image


def _tensor_problem(out: Any, size: int) -> str | None:
    """What keeps a transform's output from being a (3, size, size) tensor in [-1, 1] (translated), or None."""
    import torch

    if not isinstance(out, torch.Tensor):
        return tr("it returned a {kind}; end with ToTensor() and Normalize([0.5], [0.5]).", kind=type(out).__name__)
    if out.ndim != 3 or out.shape[0] != 3:
        return tr("shape {shape}: expected 3 channels first. Convert RGBA to RGB (to_rgb).", shape=tuple(out.shape))
    if tuple(out.shape[1:]) != (size, size):
        return tr(
            "shape {shape}: expected (3, {size}, {size}). Use Resize(({size}, {size})).",
            shape=tuple(out.shape),
            size=size,
        )
    low, high = out.min().item(), out.max().item()
    if low >= 0:
        return tr(
            "values in [{low:.2f}, {high:.2f}]: still ToTensor's [0, 1]. Add Normalize([0.5], [0.5]).",
            low=low,
            high=high,
        )
    return None


def check_preprocess(transform: Callable | None, size: int) -> bool:
    """Pass when `transform` turns any PIL image into a (3, size, size) float tensor in [-1, 1]
    like preprocess(size)."""
    import torch

    from course_utils.data import preprocess

    if transform is None:
        return not_attempted(tr("your preprocess transform"))
    image = _probe_image()
    try:
        out = transform(image)
    except Exception as err:
        return verdict(
            False,
            "",
            tr(
                "it raised {error}: {err}. Does it convert the image to RGB first?",
                error=type(err).__name__,
                err=err,
            ),
        )
    problem = _tensor_problem(out, size)
    if problem is not None:
        return verdict(False, "", problem)
    reference = preprocess(size, flip=False)(image)
    if not (torch.allclose(out, reference, atol=1e-4) or torch.allclose(out, reference.flip(-1), atol=1e-4)):
        diff = min((out - reference).abs().max().item(), (out - reference.flip(-1)).abs().max().item())
        return verdict(
            False,
            "",
            tr(
                "shape and range are right but pixels differ from preprocess({size}) by up to {diff:.2f}: "
                "check the order (RGB, Resize, flip, ToTensor, Normalize) and the white background.",
                size=size,
                diff=diff,
            ),
        )
    low, high = out.min().item(), out.max().item()
    return verdict(
        True,
        tr(
            "(3, {size}, {size}) in [{low:.0f}, {high:.0f}], pixel for pixel what preprocess({size}) gives.",
            size=size,
            low=low,
            high=high,
        ),
        "",
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
        return not_attempted(tr("to_pixels"))
    ramp = torch.linspace(-1, 1, 16).repeat(3, 4, 1)  # (3, 4, 16): a grey ramp from black to white
    try:
        image = to_pixels(ramp)
    except Exception as err:
        raised = tr("it raised {error_type}: {error_text}", error_type=type(err).__name__, error_text=err)
        return verdict(False, "", raised)
    if not isinstance(image, Image.Image):
        return verdict(
            False,
            "",
            tr(
                "it returned a {kind}; end with Image.fromarray(array) on a uint8 (H, W, 3) array.",
                kind=type(image).__name__,
            ),
        )
    if image.size != (16, 4) or image.mode != "RGB":
        return verdict(
            False,
            "",
            tr(
                "got a {mode} image of {size}; expected RGB (16, 4): permute (C, H, W) -> (H, W, C).",
                mode=image.mode,
                size=image.size,
            ),
        )
    if _looks_reshaped(to_pixels):
        scrambled = tr(
            "the channels are scrambled: reshape re-reads the numbers in memory order; "
            "move the channel axis with x.permute(1, 2, 0) instead."
        )
        return verdict(False, "", scrambled)
    row = [image.getpixel((x, 0))[0] for x in range(16)]
    expected = [round((v + 1) * 127.5) for v in torch.linspace(-1, 1, 16).tolist()]
    if max(abs(a - b) for a, b in zip(row, expected)) > 1:
        hint = (
            tr("all dark: did you multiply by 255 before adding 1?")
            if max(row) < 200
            else tr("compute (x + 1) * 127.5, or (x / 2 + 0.5) * 255")
        )
        return verdict(
            False,
            "",
            tr(
                "the grey ramp came out as {start}...{end}, expected {want_start}...{want_end}: {hint}.",
                start=row[:4],
                end=row[-2:],
                want_start=expected[:4],
                want_end=expected[-2:],
                hint=hint,
            ),
        )
    return verdict(True, tr("-1 -> 0 and 1 -> 255: you undid Normalize exactly as the pipelines do."), "")
