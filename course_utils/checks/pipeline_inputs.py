"""Lesson 03's checks of a pipeline call's arguments (prompt, strength and steps, size, mask, guidance),
before any model runs, with a message that says what to change."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image

from course_utils.checks.values import require_multiple_of_8, require_positive_int
from course_utils.photos import load_photo


# ----------------------------------------------------------------------------------------------------- input checks
def check_prompt(prompt: Any, argument: str = "prompt") -> str | list[str]:
    """A prompt is a string or a non-empty list of strings (one image per string); anything else is explained."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        if len(prompt) == 0:
            raise ValueError(
                f"{argument}=[] is an empty list: expected a string, or a list with one string per image you want. "
                f"Pass e.g. {argument}='a photo of a cat' or {argument}=['a cat', 'a dog']."
            )
        wrong = [i for i, p in enumerate(prompt) if not isinstance(p, str)]
        if wrong:
            raise TypeError(
                f"{argument}[{wrong[0]}] is {type(prompt[wrong[0]]).__name__}, not a string: every item of "
                f"{argument} must be a text prompt. Convert it with str() or remove it."
            )
        return list(prompt)
    raise TypeError(
        f"{argument} is a {type(prompt).__name__}: expected a string or a list of strings. "
        f"Pass e.g. {argument}='a photo of a cat'."
    )


def steps_that_run(num_inference_steps: int, strength: float) -> int:
    """Denoising steps image-to-image runs, as diffusers counts them: int(num_inference_steps * strength)."""
    return min(int(num_inference_steps * strength), num_inference_steps)


def _smallest_strength(num_inference_steps: int) -> float:
    """The smallest strength, in hundredths, that leaves at least one step to run."""
    hundredths = math.ceil(100 / num_inference_steps)
    while steps_that_run(num_inference_steps, hundredths / 100) < 1:
        hundredths += 1
    return min(hundredths, 100) / 100


def _fewest_steps(strength: float) -> int:
    """The fewest num_inference_steps that leave at least one step to run at this strength."""
    steps = max(1, math.ceil(1 / strength))
    while steps_that_run(steps, strength) < 1:
        steps += 1
    return steps


def check_strength(strength: Any, num_inference_steps: int | None = None) -> float:
    """`strength` must be in (0, 1]; with `num_inference_steps`, it must also leave at least one step to run."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)):
        raise TypeError(f"strength={strength!r}: expected a number in (0, 1], e.g. strength=0.6.")
    if not 0 < strength <= 1:
        raise ValueError(
            f"strength={strength}: expected a number in (0, 1]. It is the fraction of the noise schedule that is "
            "added to your image and then removed: near 0 keeps the image, 1 replaces it completely. "
            "Try strength=0.6."
        )
    if num_inference_steps is not None:
        require_positive_int("num_inference_steps", num_inference_steps)
        if steps_that_run(num_inference_steps, strength) < 1:
            product = num_inference_steps * strength
            raise ValueError(
                f"strength={strength} with num_inference_steps={num_inference_steps} leaves "
                f"int({num_inference_steps} x {strength}) = int({product:g}) = 0 denoising steps: "
                "num_inference_steps x strength must be at least 1. Unchecked, image-to-image "
                "fails with 'RuntimeError: cannot reshape tensor of 0 elements' (DDIM, Euler and "
                "most schedulers) or, with PNDM, runs one step at the lowest noise level and "
                "returns the image almost unchanged. Raise strength to at least "
                f"{_smallest_strength(num_inference_steps)}, or num_inference_steps to at least "
                f"{_fewest_steps(strength)}."
            )
    return float(strength)


def check_guidance(guidance_scale: Any) -> float:
    """Classifier-free guidance scale: a finite number >= 0 (at most 1 means no guidance in
    diffusers)."""
    expected = "expected a finite number >= 0, e.g. guidance_scale=7.5 (1 or less switches guidance off)"
    if isinstance(guidance_scale, str):
        raise TypeError(f"guidance_scale={guidance_scale!r} is text: {expected}, without quotes.")
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
        raise TypeError(f"guidance_scale={guidance_scale!r}: {expected}.")
    if not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise ValueError(
            f"guidance_scale={guidance_scale!r}: {expected}. NaN would silently "
            "switch guidance off, and infinity turns every pixel black."
        )
    return float(guidance_scale)


def check_size(height: int, width: int) -> tuple[int, int]:
    """Height and width must be positive multiples of 8 (the VAE's downsampling factor)."""
    return require_multiple_of_8(height, width)


def match_mask(mask: Image.Image, image: Image.Image, resize: bool = True) -> Image.Image:
    """Return `mask` as a black/white 'L' image of the same size as `image`; resize it (with a note) or raise."""
    if not isinstance(mask, Image.Image):
        raise TypeError(f"mask_image is a {type(mask).__name__}: expected a PIL image (white = repaint, black = keep).")
    mask = mask.convert("L")
    if mask.size != image.size:
        if not resize:
            raise ValueError(
                f"mask_image is {mask.width}x{mask.height} px but image is {image.width}x{image.height} px: "
                "expected the same size, so that every mask pixel says whether the pixel under it is repainted. "
                "Resize the mask with mask.resize(image.size, Image.NEAREST), or draw it at the image's size."
            )
        print(
            f"note: mask_image was {mask.width}x{mask.height} px, image is {image.width}x{image.height} px; "
            "resized the mask to the image's size (nearest neighbour, so it stays black and white)."
        )
        mask = mask.resize(image.size, Image.NEAREST)
    return mask


def check_inputs(
    prompt: Any,
    *,
    image: Image.Image | str | Path | None = None,
    mask_image: Image.Image | None = None,
    strength: float | None = None,
    num_inference_steps: int | None = None,
    height: int | None = None,
    width: int | None = None,
    guidance_scale: float | None = None,
) -> dict[str, Any]:
    """Check the arguments of a pipeline call; return them as keyword arguments (images loaded, mask matched)."""
    kwargs: dict[str, Any] = {"prompt": check_prompt(prompt)}
    if guidance_scale is not None:
        kwargs["guidance_scale"] = check_guidance(guidance_scale)
    if image is not None:
        kwargs["image"] = image if isinstance(image, Image.Image) else load_photo(image)
    if mask_image is not None:
        if image is None:
            raise ValueError("mask_image was given without image: inpainting needs the image the mask belongs to.")
        kwargs["mask_image"] = match_mask(mask_image, kwargs["image"])
    if num_inference_steps is not None:
        kwargs["num_inference_steps"] = require_positive_int("num_inference_steps", num_inference_steps)
    if strength is not None:
        kwargs["strength"] = check_strength(strength, num_inference_steps)
    if (height is None) != (width is None):
        raise ValueError(f"height={height}, width={width}: give both or neither (neither: the model's default size).")
    if height is not None:
        kwargs["height"], kwargs["width"] = check_size(height, width)
    elif image is not None:
        check_size(kwargs["image"].height, kwargs["image"].width)
    return kwargs
