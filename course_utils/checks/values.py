"""Input checks that fail with a message a learner can act on: what was wrong, what was expected, what to do."""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(value: str, options: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest option, or '' when nothing is close."""
    close = difflib.get_close_matches(str(value), list(options), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def require_choice(name: str, value: str, options: Iterable[str], hint: str = "") -> str:
    """Return `value` if it is one of `options`; else raise ValueError naming the argument and the choices."""
    options = list(options)
    if value in options:
        return value
    raise ValueError(
        f"{name}={value!r} is not one of {', '.join(repr(o) for o in options)}."
        f"{did_you_mean(value, options)}{(' ' + hint) if hint else ''}"
    )


def require_multiple_of_8(height: int, width: int) -> tuple[int, int]:
    """Check an image size for latent diffusion: the VAE shrinks each side by 8, so both must divide by 8."""
    bad = [f"{n}={v}" for n, v in (("height", height), ("width", width)) if int(v) <= 0 or int(v) % 8]
    if bad:
        fix = ", ".join(
            f"{n}={max(8, int(int(v) / 8 + 0.5) * 8)}"
            for n, v in (("height", height), ("width", width))
            if int(v) <= 0 or int(v) % 8
        )
        raise ValueError(
            f"{' and '.join(bad)}: height and width must be positive multiples of 8, because the VAE "
            f"turns every 8x8 block of pixels into one latent. Try {fix}."
        )
    return int(height), int(width)


def require_seed(name: str, value: int) -> int:
    """Check a random seed: a whole number >= 0 (torch and numpy refuse text and negative seeds)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}={value!r}: expected a whole number >= 0, e.g. {name}=0.")
    return value


def require_positive_number(name: str, value: float) -> float:
    """Check a duration or scale: a finite number above 0."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r}: expected a finite number above 0, e.g. {name}=1.0.")
    return float(value)


def require_positive_int(name: str, value: int) -> int:
    """Check that a count (steps, batch size, ...) is a whole number of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a whole number of at least 1.")
    return value
