"""Checks for lesson 01's exercises: read the noise schedule, write one DDPM step and one DDIM step by hand.

Each check compares the learner's answer with what diffusers itself computes (`DDPMScheduler.step`,
`DDIMScheduler.step`, `alphas_cumprod`), prints a verdict and, when the answer is wrong, the largest difference and the
most likely cause. A check never raises on a wrong answer; an answer left as None counts as not attempted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from course_utils.exercises import not_attempted, verdict
from course_utils.i18n import msg, tr

ATOL = 1e-5  # fp32 arithmetic done in another order differs by ~1e-7; a wrong formula differs by far more
CHECK_STEPS = 10  # fewer steps than training, so one step jumps several training timesteps (as in the lesson)
SHAPE = (1, 3, 8, 8)


def _default_ddpm_config() -> dict:
    """google/ddpm-cat-256's scheduler settings (the checks use them when no scheduler is given)."""
    from course_utils.models.architectures import DDPM_SCHEDULER

    return dict(DDPM_SCHEDULER)


def _scheduler_copy(kind: str, scheduler=None):
    """A fresh DDPMScheduler or DDIMScheduler with the same config as `scheduler` (the learner's stays untouched)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}[kind]
    config = scheduler.config if scheduler is not None else _default_ddpm_config()
    copy = cls.from_config(config)
    copy.set_timesteps(CHECK_STEPS)
    return copy


def _guarded(scheduler):
    """The same scheduler, but calling its `.step` raises: the exercise is to write the step yourself."""

    def step(*args, **kwargs):
        raise RuntimeError(
            "scheduler.step is switched off in this exercise: compute the step from the formulas yourself."
        )

    scheduler.step = step
    return scheduler


def _case_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A noisy sample and a model output (predicted noise) of a fixed shape, from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)


def _case_timesteps(scheduler) -> list[torch.Tensor]:
    """First, a middle and the last timestep of the scheduler's sequence (the last one is special in both samplers)."""
    ts = scheduler.timesteps
    return [ts[0], ts[len(ts) // 2], ts[-1]]


@dataclass
class _Mistake:
    """A known wrong variant of the step, and what to tell the learner when their answer matches it."""

    name: str
    hint: str  # an English template marked with msg(), translated with tr() when printed


def _first_difference(answer, expected: torch.Tensor, what: str) -> str | None:
    """None if `answer` is a tensor equal to `expected` (within ATOL); else a sentence saying what differs."""
    if not isinstance(answer, torch.Tensor):
        return tr("{what} should return a torch.Tensor, but it returned {kind}.", what=what, kind=type(answer).__name__)
    if tuple(answer.shape) != tuple(expected.shape):
        return tr(
            "{what} returned shape {shape}; expected {expected} (the shape of `sample`).",
            what=what,
            shape=tuple(answer.shape),
            expected=tuple(expected.shape),
        )
    diff = (answer.detach().float().cpu() - expected).abs().max().item()
    if diff != diff:  # NaN
        return tr("{what} returned NaN values (a square root of a negative number, or a division by zero?).", what=what)
    return None if diff <= ATOL else tr("{what} differs from diffusers by up to {diff:.3g}.", what=what, diff=diff)


def _explain(answer: torch.Tensor, variants: dict[str, torch.Tensor], mistakes: list[_Mistake]) -> str:
    """The hint of the first known mistake whose result equals the learner's answer, or a generic pointer."""
    for mistake in mistakes:
        candidate = variants.get(mistake.name)
        if candidate is not None and (answer.detach().float().cpu() - candidate).abs().max().item() <= ATOL:
            return tr("Likely cause: {hint}", hint=tr(mistake.hint))
    return tr(
        "Compare term by term with the formulas above: the predicted clean image x̂0, the coefficients, then the noise."
    )


def _run_cases(fn: Callable, kind: str, what: str, scheduler, mistakes: list[_Mistake]) -> bool:
    """Call `fn` on three timesteps, compare with diffusers, print one verdict and return it."""
    reference = _scheduler_copy(kind, scheduler)
    for seed, t in enumerate(_case_timesteps(reference)):
        sample, model_output = _case_inputs(seed)
        expected, noise, variants = _reference_step(kind, reference, model_output, t, sample, seed)
        args = (model_output.clone(), t.clone(), sample.clone(), _guarded(_scheduler_copy(kind, scheduler)))
        if kind == "ddpm":
            args += (noise.clone(),)
        try:
            answer = fn(*args)
        except Exception as err:  # the learner's code failed: report it, do not stop the notebook
            return verdict(
                False,
                "",
                tr(
                    "{what} raised {error} at t={t}: {message}",
                    what=what,
                    error=type(err).__name__,
                    t=int(t),
                    message=err,
                ),
            )
        if answer is None:
            return not_attempted(tr("{what} (it returned None)", what=what))
        problem = _first_difference(answer, expected, tr("{what} at t={t}", what=what, t=int(t)))
        if problem is not None:
            hint = (
                _explain(answer, variants, mistakes)
                if isinstance(answer, torch.Tensor) and answer.shape == expected.shape
                else ""
            )
            failure = f"{problem} {hint}".strip()  # both parts are already translated
            return verdict(False, "", failure)
    steps = ", ".join(str(int(t)) for t in _case_timesteps(reference))
    return verdict(
        True,
        tr(
            "{what} matches diffusers at t = {steps} (first, middle and last of {n} steps).",
            what=what,
            steps=steps,
            n=CHECK_STEPS,
        ),
        "",
    )


# ----- DDPM ---------------------------------------------------------------------------------------------------------


def _ddpm_variants(scheduler, model_output, t, sample, noise) -> dict[str, torch.Tensor]:
    """The correct DDPM step (as DDPMScheduler.step computes it) and common wrong versions, keyed by name."""
    t = int(t)
    prev_t = int(scheduler.previous_timestep(t))
    abar_t = scheduler.alphas_cumprod[t]
    abar_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)
    beta_t = 1 - abar_t / abar_prev  # the beta of the whole jump t -> prev_t

    def step(clip=True, beta=beta_t, add_noise=t > 0, std=True):
        x0 = (sample - (1 - abar_t) ** 0.5 * model_output) / abar_t**0.5
        if clip:
            x0 = x0.clamp(-scheduler.config.clip_sample_range, scheduler.config.clip_sample_range)
        alpha = 1 - beta
        mean = (abar_prev**0.5 * beta / (1 - abar_t)) * x0 + (alpha**0.5 * (1 - abar_prev) / (1 - abar_t)) * sample
        if not add_noise:
            return mean
        variance = ((1 - abar_prev) / (1 - abar_t) * beta).clamp(min=1e-20)
        return mean + (variance**0.5 if std else variance) * noise

    return {
        "correct": step(),
        "no_noise": step(add_noise=False) if t > 0 else None,
        "noise_at_last_step": step(add_noise=True) if t == 0 else None,
        "no_clip": step(clip=False),
        "beta_of_one_training_step": step(beta=scheduler.betas[t]) if prev_t != t - 1 else None,
        "variance_not_std": step(std=False) if t > 0 else None,
    }


DDPM_MISTAKES = [
    _Mistake(
        "no_noise", msg("no fresh noise was added. For t > 0 DDPM samples x_{t-1} = mean + sqrt(variance) * noise.")
    ),
    _Mistake(
        "noise_at_last_step",
        msg("noise was added at the last step. When prev_t < 0 (going to the clean image) DDPM adds none."),
    ),
    _Mistake(
        "no_clip", msg("x̂0 was not clipped. The scheduler clamps it to [-1, 1] because config.clip_sample is True.")
    ),
    _Mistake(
        "beta_of_one_training_step",
        msg(
            "β was read as scheduler.betas[t], the β of a single training step. Here one step jumps from t to "
            "prev_t = scheduler.previous_timestep(t), so use β = 1 − ᾱ_t / ᾱ_prev."
        ),
    ),
    _Mistake(
        "variance_not_std",
        msg("the noise was scaled by the variance. Scale it by the standard deviation, sqrt(variance)."),
    ),
]


def _reference_step(kind: str, scheduler, model_output, t, sample, seed):
    """diffusers' own result for one step, the noise it drew (DDPM), and the known wrong variants."""
    from diffusers.utils.torch_utils import randn_tensor

    if kind == "ddpm":
        expected = scheduler.step(model_output, t, sample, generator=torch.Generator().manual_seed(seed)).prev_sample
        # DDPMScheduler.step draws its noise with randn_tensor from the generator: the same draw, made again here.
        noise = randn_tensor(
            model_output.shape, generator=torch.Generator().manual_seed(seed), dtype=model_output.dtype
        )
        variants = _ddpm_variants(scheduler, model_output, t, sample, noise)
    else:
        expected = scheduler.step(model_output, t, sample, eta=0.0).prev_sample
        noise = None
        variants = _ddim_variants(scheduler, model_output, t, sample)
    if (variants["correct"] - expected).abs().max().item() > ATOL:  # guards the hints against a changed diffusers
        variants = {}
    return expected, noise, variants


def check_ddpm_step(fn: Callable | None, scheduler=None) -> bool:
    """Check `fn(model_output, timestep, sample, scheduler, noise) -> prev_sample` against DDPMScheduler.step.

    `noise` is the Gaussian noise the scheduler itself would draw for this step; `scheduler` has had
    `set_timesteps(10)` called, and its `.step` is switched off. Pass the lesson's scheduler to use its config.
    """
    if fn is None:
        return not_attempted(tr("your DDPM step"))
    return _run_cases(fn, "ddpm", tr("your DDPM step"), scheduler, DDPM_MISTAKES)


# ----- DDIM ---------------------------------------------------------------------------------------------------------


def _ddim_variants(scheduler, model_output, t, sample) -> dict[str, torch.Tensor]:
    """The correct deterministic DDIM step (eta = 0) and common wrong versions, keyed by name."""
    t = int(t)
    jump = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    abar_t = scheduler.alphas_cumprod[t]

    def abar(prev_t: int, negative_index_bug: bool = False):
        if prev_t >= 0 or negative_index_bug:
            return scheduler.alphas_cumprod[prev_t]
        return scheduler.final_alpha_cumprod

    def step(prev_t=t - jump, clip=True, eps_from_clipped=False, negative_index_bug=False):
        abar_prev = abar(prev_t, negative_index_bug)
        x0 = (sample - (1 - abar_t) ** 0.5 * model_output) / abar_t**0.5
        if clip:
            x0 = x0.clamp(-scheduler.config.clip_sample_range, scheduler.config.clip_sample_range)
        eps = (sample - abar_t**0.5 * x0) / (1 - abar_t) ** 0.5 if eps_from_clipped else model_output
        return abar_prev**0.5 * x0 + (1 - abar_prev) ** 0.5 * eps

    clips = bool(scheduler.config.clip_sample)
    return {
        "correct": step(),
        "prev_is_t_minus_1": step(prev_t=t - 1) if jump != 1 and t > 0 else None,
        "no_clip": step(clip=False) if clips else None,
        "eps_from_clipped_x0": step(eps_from_clipped=True) if clips else None,
        "negative_index": step(negative_index_bug=True) if t - jump < 0 else None,
    }


DDIM_MISTAKES = [
    _Mistake(
        "prev_is_t_minus_1",
        msg(
            "the step went to t − 1. DDIM jumps to prev_t = t − num_train_timesteps // num_inference_steps "
            "(scheduler.config.num_train_timesteps, scheduler.num_inference_steps)."
        ),
    ),
    _Mistake(
        "no_clip", msg("x̂0 was not clipped. The scheduler clamps it to [-1, 1] because config.clip_sample is True.")
    ),
    _Mistake(
        "eps_from_clipped_x0",
        msg(
            "ε was recomputed from the clipped x̂0. DDIMPipeline keeps the model's own ε in the direction term "
            "(use_clipped_model_output is off)."
        ),
    ),
    _Mistake(
        "negative_index",
        msg(
            "at the last step prev_t is negative, and alphas_cumprod[prev_t] silently reads from the END of the table. "
            "Use scheduler.final_alpha_cumprod (1.0 here: the clean image has no noise)."
        ),
    ),
]


def check_ddim_step(fn: Callable | None, scheduler=None) -> bool:
    """Check `fn(model_output, timestep, sample, scheduler) -> prev_sample` against DDIMScheduler.step with eta=0.

    `scheduler` is a DDIMScheduler made with `from_config` of the lesson's scheduler, after `set_timesteps(10)`;
    its `.step` is switched off.
    """
    if fn is None:
        return not_attempted(tr("your DDIM step"))
    return _run_cases(fn, "ddim", tr("your DDIM step"), scheduler, DDIM_MISTAKES)


# ----- the noise schedule ---------------------------------------------------------------------------------------------


def check_noise_overtakes_signal(answer: int | torch.Tensor | None, scheduler=None) -> bool:
    """Check the first timestep t where the noise scale sqrt(1 − ᾱ_t) exceeds the signal scale sqrt(ᾱ_t)."""
    if answer is None:
        return not_attempted(tr("the timestep where noise overtakes signal"))
    abar = _scheduler_copy("ddpm", scheduler).alphas_cumprod
    signal, noise = abar.sqrt(), (1 - abar).sqrt()
    expected = int(torch.nonzero(noise > signal)[0])
    try:
        given = int(answer)
    except (TypeError, ValueError):
        return verdict(False, "", tr("expected a whole-number timestep, got {answer!r}.", answer=answer))
    if given == expected:
        return verdict(
            True,
            tr(
                "t = {t}: signal {signal:.4f} < noise {noise:.4f}, while at t = {before} the signal still wins "
                "({signal_before:.4f} vs {noise_before:.4f}). That is only {share:.0%} of the way through the "
                "{total} timesteps: this schedule drowns the signal early, so most timesteps are spent on "
                "mostly-noise images.",
                t=expected,
                signal=signal[expected],
                noise=noise[expected],
                before=expected - 1,
                signal_before=signal[expected - 1],
                noise_before=noise[expected - 1],
                share=expected / abar.numel(),
                total=abar.numel(),
            ),
            "",
        )
    if not 0 <= given < abar.numel():
        return verdict(
            False,
            "",
            tr("t = {t} is outside the schedule: timesteps run from 0 to {last}.", t=given, last=abar.numel() - 1),
        )
    if noise[given] > signal[given]:
        side = tr("already more noise than signal")
    else:
        side = tr("still more signal than noise")
    return verdict(
        False,
        "",
        tr(
            "not t = {t}: there signal = {signal:.3f} and noise = {noise:.3f} ({side}). "
            "Find the FIRST t where noise > signal, i.e. where alphas_cumprod drops below 0.5.",
            t=given,
            signal=signal[given],
            noise=noise[given],
            side=side,
        ),
    )
