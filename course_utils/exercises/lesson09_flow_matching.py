"""Checks for lesson 09's exercises: SD3's static shift of the sigmas, the Euler step of flow matching, and DDPM's
timesteps as flow-matching sigmas. Each compares with diffusers' own schedulers, prints what differs and returns True
or False."""

from __future__ import annotations

from typing import Callable

import torch

from course_utils.exercises import not_attempted, verdict
from course_utils.i18n import tr

SHIFTS = (1.0, 3.0, 6.0)


def _call(fn: Callable, *args, shift: float | None = None) -> tuple[torch.Tensor | None, str]:
    """fn(*args) as a float tensor, or None and a translated sentence saying what went wrong, naming the shift it was
    called with if one is given (a learner's bug is a verdict)."""
    try:
        out = fn(*args)
    except Exception as err:
        if shift is None:
            return None, tr("it raised {error}: {err}.", error=type(err).__name__, err=err)
        return None, tr("with shift={shift}, it raised {error}: {err}.", shift=shift, error=type(err).__name__, err=err)
    if out is None:
        if shift is None:
            return None, tr("it returned None.")
        return None, tr("with shift={shift}, it returned None.", shift=shift)
    try:
        return torch.as_tensor(out).float(), ""
    except (TypeError, ValueError, RuntimeError):
        if shift is None:
            return None, tr("it returned {kind}; expected a tensor.", kind=type(out).__name__)
        return None, tr(
            "with shift={shift}, it returned {kind}; expected a tensor.", shift=shift, kind=type(out).__name__
        )


def _close(given: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> bool:
    return given.shape == expected.shape and bool(torch.allclose(given, expected, atol=tol))


def check_shift(fn: Callable | None) -> bool:
    """Pass when fn(sigmas, shift) gives the sigmas FlowMatchEulerDiscreteScheduler makes from them at each shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if fn is None:
        return not_attempted(tr("my_shift(sigmas, shift)"))
    sigmas = torch.linspace(1.0, 0.05, 10)
    for shift in SHIFTS:
        scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
        scheduler.set_timesteps(sigmas=sigmas.tolist())  # the scheduler shifts the sigmas it is given
        expected = scheduler.sigmas[:-1]
        given, problem = _call(fn, sigmas.clone(), shift, shift=shift)
        if given is None:
            return verdict(False, "", problem)
        if _close(given, expected):
            continue
        if _close(given, sigmas):
            hint = tr("that is the sigmas unchanged; apply shift * s / (1 + (shift - 1) * s)")
        elif _close(given, shift * sigmas / (1 + shift * sigmas)):
            hint = tr("the denominator is 1 + (shift - 1) * s, so that shift 1 changes nothing")
        elif _close(given, shift * sigmas):
            hint = tr("shift * s alone goes above 1; divide by 1 + (shift - 1) * s")
        else:
            hint = tr("expected shift * s / (1 + (shift - 1) * s)")
        failure = tr(
            "at shift {shift}: {first} ... differs from the scheduler: {hint}.",
            shift=shift,
            first=given[:3].tolist(),
            hint=hint,
        )
        return verdict(False, "", failure)
    return verdict(
        True,
        tr(
            "your sigmas equal FlowMatchEulerDiscreteScheduler's at shifts {shifts}; at shift 3, σ = 0.5 becomes "
            "{shifted:.2f}.",
            shifts=SHIFTS,
            shifted=3 * 0.5 / (1 + 2 * 0.5),
        ),
        "",
    )


def check_euler_step(fn: Callable | None) -> bool:
    """Pass when fn(sample, velocity, sigma, sigma_next) equals FlowMatchEulerDiscreteScheduler.step."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if fn is None:
        return not_attempted(tr("my_euler_step(sample, velocity, sigma, sigma_next)"))
    g = torch.Generator().manual_seed(0)
    sample, velocity = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(4)
    t, sigma, sigma_next = scheduler.timesteps[1], scheduler.sigmas[1], scheduler.sigmas[2]
    expected = scheduler.step(velocity, t, sample).prev_sample
    given, problem = _call(fn, sample.clone(), velocity.clone(), float(sigma), float(sigma_next))
    if given is None:
        return verdict(False, "", problem)
    if _close(given, expected):
        return verdict(
            True,
            tr(
                "your step equals scheduler.step: from σ = {sigma:.3f} to {sigma_next:.3f}, "
                "x + ({sigma_next:.3f} - {sigma:.3f}) * v.",
                sigma=sigma,
                sigma_next=sigma_next,
            ),
            "",
        )
    if _close(given, sample + (sigma - sigma_next) * velocity):
        hint = tr("the sign is turned: σ falls while sampling, so (sigma_next - sigma) is negative")
    elif _close(given, sample - sigma * velocity):
        hint = tr("that jumps straight to σ = 0 (x - σ v is the predicted clean latent); step only to sigma_next")
    else:
        hint = tr("expected sample + (sigma_next - sigma) * velocity")
    difference = (given - expected).abs().max()
    failure = tr("your step differs from scheduler.step by {difference:.3g}: {hint}.", difference=difference, hint=hint)
    return verdict(False, "", failure)


def check_ddpm_sigma(fn: Callable | None) -> bool:
    """Pass when fn(alphas_cumprod) gives sqrt(1 - a) / (sqrt(a) + sqrt(1 - a)) for SD 1.5's DDPM schedule."""
    from diffusers import DDPMScheduler

    if fn is None:
        return not_attempted(tr("my_ddpm_sigma(alphas_cumprod)"))
    alphas_cumprod = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod
    a, b = alphas_cumprod.sqrt(), (1 - alphas_cumprod).sqrt()
    expected = b / (a + b)
    given, problem = _call(fn, alphas_cumprod.clone())
    if given is None:
        return verdict(False, "", problem)
    if _close(given, expected):
        return verdict(
            True,
            tr(
                "t = 0 is σ = {first:.4f}, t = 999 is σ = {last:.4f}: SD 1.5's cleanest training image "
                "carries {first:.1%} noise on the flow-matching scale, and its noisiest still holds "
                "{kept:.1%} of the image.",
                first=expected[0],
                last=expected[-1],
                kept=1 - expected[-1],
            ),
            "",
        )
    if _close(given, b):
        hint = tr("that is sqrt(1 - alphas_cumprod) alone; divide it by sqrt(a) + sqrt(1 - a)")
    elif _close(given, 1 - alphas_cumprod):
        hint = tr("that is 1 - alphas_cumprod; take square roots: b = sqrt(1 - a), then b / (sqrt(a) + b)")
    elif _close(given, a / (a + b)):
        hint = tr("that is 1 - σ, the image's share; σ is the noise's share b / (a + b)")
    else:
        hint = tr("expected sqrt(1 - a) / (sqrt(a) + sqrt(1 - a)) with a = alphas_cumprod")
    return verdict(False, "", tr("your sigmas differ from the expected ones: {hint}.", hint=hint))
