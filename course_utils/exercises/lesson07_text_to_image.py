"""Checks for lesson 07's exercises: the VAE's scaling factor measured by hand, caption dropout written out, and the
min-SNR weight of the training loss. Each compares with course_utils.text_to_image, the code that trained the
course's emoji model, prints what differs and returns True or False."""

from __future__ import annotations

from typing import Callable

import torch

from course_utils.exercises import not_attempted, verdict
from course_utils.i18n import msg, tr

DROP_ROWS = 20_000  # captions per dropout test: the dropped share at p = 0.1 is then 0.1 +- 0.008 (4 sigma)
SNR_TIMESTEPS = (0, 10, 100, 300, 500, 999)


def check_scaling_factor(answer: float | None, means: torch.Tensor, stds: torch.Tensor) -> bool:
    """Pass when `answer` is 1 / the standard deviation of latents sampled from (means, stds), within 1%."""
    from course_utils.text_to_image import scaling_factor

    if answer is None:
        return not_attempted(tr("the scaling factor measured from the latents"))
    try:
        given = float(answer)
    except (TypeError, ValueError):
        return verdict(False, "", tr("expected a number, got {kind}.", kind=type(answer).__name__))
    expected = scaling_factor(means.cpu(), stds.cpu())
    if abs(given - expected) <= 0.01 * expected:
        return verdict(
            True,
            tr(
                "{given:.4f}: latents multiplied by it have a standard deviation of 1 "
                "(the training code measured {expected:.4f}).",
                given=given,
                expected=expected,
            ),
            "",
        )
    if abs(given * expected - 1) <= 0.01:
        hint = tr("that is the standard deviation itself; the factor is 1 / std, so that latents * factor have std 1")
    elif abs(given - expected**2) <= 0.02 * expected**2:
        hint = tr("that is 1 / the variance; take the square root: 1 / std")
    elif abs(given - float(1.0 / means.float().std())) <= 0.01 * given:
        hint = tr(
            "that is 1 / the spread of the means alone; the UNet trains on latents *sampled* from each Gaussian: "
            "means + stds * noise"
        )
    elif abs(given - float(1.0 / stds.float().mean())) <= 0.01 * given:
        hint = tr(
            "that is 1 / the mean of `stds`, each Gaussian's own spread; measure how far the latents themselves "
            "spread: 1 / (means + stds * noise).std()"
        )
    else:
        hint = tr("sample latents = means + stds * torch.randn_like(stds), then take 1 / latents.std()")
    return verdict(
        False,
        "",
        tr("{given:.4f} is not it (expected about {expected:.4f}): {hint}.", given=given, expected=expected, hint=hint),
    )


def _dropout_cases() -> tuple[torch.Tensor, torch.Tensor]:
    """Many distinct fake captions (ids that never equal the empty prompt's) and a (1, 77) empty prompt."""
    g = torch.Generator().manual_seed(0)
    empty = torch.cat([torch.tensor([49406, 49407]), torch.full((75,), 49407)])[None]
    captions = torch.randint(300, 49000, (DROP_ROWS, 77), generator=g)
    return captions, empty


def _dropped_rows(
    fn: Callable, captions: torch.Tensor, empty: torch.Tensor, p: float, seed: int
) -> torch.Tensor | str | None:
    """Which rows `fn` replaced by the empty prompt, None when it returned None, or a sentence (translated) saying
    what else it did."""
    try:
        out = fn(captions.clone(), empty.clone(), p, torch.Generator().manual_seed(seed))
    except Exception as err:  # a learner's bug is a wrong answer, not a crash
        return tr("with p={p} it raised {error}: {message}.", p=p, error=type(err).__name__, message=err)
    if out is None:
        return None
    if not isinstance(out, torch.Tensor) or out.shape != captions.shape:
        return tr(
            "it returned {returned}; expected a tensor of the input's shape {shape} "
            "(torch.where(drop[:, None], empty_ids.expand_as(input_ids), input_ids)).",
            returned=getattr(out, "shape", type(out).__name__),
            shape=tuple(captions.shape),
        )
    dropped = (out == empty).all(dim=1)
    kept = (out == captions).all(dim=1)
    if not (dropped | kept).all():
        return tr(
            "some rows are neither the caption nor the empty prompt's ids: replace a whole row by empty_ids "
            "(start token, end token, padding), not by zeros or a part of it."
        )
    return dropped


def _shares_problem(shares: dict[float, float]) -> str | None:
    """What is wrong with the shares of captions dropped at p = 0, 1, 0.1 and 0.5 (translated), or None."""
    if shares[0.0] == 1.0 and shares[1.0] == 0.0:
        return tr(
            "p=0 dropped every caption and p=1 none: you keep a caption with probability p; "
            "drop it when its random number is below p."
        )
    if shares[0.0] != 0.0 or shares[1.0] != 1.0:
        return tr(
            "p=0 dropped {zero:.0%} and p=1 dropped {one:.0%} of the captions; "
            "expected none and all: drop a caption when its random number is below p.",
            zero=shares[0.0],
            one=shares[1.0],
        )
    if shares[0.5] in (0.0, 1.0):
        return tr(
            "p=0.5 dropped all captions or none: draw one random number per caption "
            "(torch.rand(batch, generator=generator)), not one for the whole batch."
        )
    if abs(shares[0.1] - 0.1) > 0.008 or abs(shares[0.5] - 0.5) > 0.014:
        return tr(
            "p=0.1 dropped {tenth:.1%} and p=0.5 dropped {half:.1%} of {rows:,} captions: the share should be p.",
            tenth=shares[0.1],
            half=shares[0.5],
            rows=DROP_ROWS,
        )
    return None


def check_drop_captions(fn: Callable | None) -> bool:
    """Pass when fn(input_ids, empty_ids, p, generator) replaces each row by the empty prompt with probability p,
    independently per caption, leaves the input alone and repeats itself for the same generator seed."""
    what = "drop_captions"
    if fn is None:
        return not_attempted(what)
    captions, empty = _dropout_cases()
    shares = {}
    for seed, p in enumerate((0.0, 1.0, 0.1, 0.5)):
        dropped = _dropped_rows(fn, captions, empty, p, seed)
        if dropped is None:
            return not_attempted(tr("{what} (it returns None)", what=what))
        if isinstance(dropped, str):
            return verdict(False, "", dropped)
        shares[p] = dropped.float().mean().item()
    problem = _shares_problem(shares)
    if problem is None:
        again = [_dropped_rows(fn, captions, empty, 0.5, seed=7) for _ in range(2)]
        if not torch.equal(again[0], again[1]):
            problem = tr(
                "the same generator seed dropped different captions: draw the random numbers from "
                "`generator` (torch.rand(..., generator=generator)), so a run can be repeated."
            )
    if problem is not None:
        return verdict(False, "", problem)
    return verdict(
        True,
        tr(
            "{what} drops {tenth:.1%} of {rows:,} captions at p=0.1 and "
            "{half:.1%} at p=0.5, each caption on its own, reproducibly.",
            what=what,
            tenth=shares[0.1],
            rows=DROP_ROWS,
            half=shares[0.5],
        ),
        "",
    )


def _snr_hint(answer: torch.Tensor, snr: torch.Tensor, gamma: float) -> str:
    """Name the most likely slip in a min-SNR weight, by comparing with the usual wrong formulas (in English: the
    caller translates it with tr)."""
    slips = {
        msg("you return min(SNR, gamma) itself; divide it by SNR"): torch.clamp(snr, max=gamma),
        msg("gamma / SNR without the min exceeds 1 at noisy timesteps: use min(SNR, gamma) / SNR"): gamma / snr,
        msg("SNR is alphas_cumprod / (1 - alphas_cumprod), without a square root"): torch.clamp(snr.sqrt(), max=gamma)
        / snr.sqrt(),
        msg("SNR is alphas_cumprod / (1 - alphas_cumprod), not its inverse"): torch.clamp(1 / snr, max=gamma) * snr,
    }
    for hint, slip in slips.items():
        if answer.shape == slip.shape and torch.allclose(answer, slip, rtol=1e-4, atol=1e-6):
            return hint
    return msg("compute snr = alphas_cumprod[t] / (1 - alphas_cumprod[t]), then torch.clamp(snr, max=gamma) / snr")


def check_min_snr_weight(fn: Callable | None, noise_scheduler) -> bool:
    """Pass when fn(timesteps, gamma) gives the min-SNR weight min(SNR, gamma) / SNR of each timestep."""
    from course_utils.text_to_image import min_snr_weight

    what = tr("the min-SNR weight")
    if fn is None:
        return not_attempted(what)
    timesteps = torch.tensor(SNR_TIMESTEPS)
    alphas_cumprod = noise_scheduler.alphas_cumprod.cpu()[timesteps]  # add_noise may have moved it to the GPU
    for gamma in (5.0, 1.0):
        try:
            answer = fn(timesteps.clone(), gamma)
        except Exception as err:  # a learner's bug is a wrong answer, not a crash
            return verdict(
                False,
                "",
                tr(
                    "with gamma={gamma} it raised {error}: {message}",
                    gamma=gamma,
                    error=type(err).__name__,
                    message=err,
                ),
            )
        if answer is None:
            return not_attempted(tr("{what} (it returns None)", what=what))
        answer = torch.as_tensor(answer).detach().float().cpu()
        expected = min_snr_weight(noise_scheduler, timesteps, gamma)
        if answer.shape != expected.shape:
            return verdict(
                False,
                "",
                tr(
                    "it returned shape {shape}; expected one weight per timestep, {expected}.",
                    shape=tuple(answer.shape),
                    expected=tuple(expected.shape),
                ),
            )
        if not torch.allclose(answer, expected, rtol=1e-4, atol=1e-6):
            hint = _snr_hint(answer, alphas_cumprod / (1 - alphas_cumprod), gamma)
            return verdict(False, "", tr("at gamma={gamma} the weights differ: {hint}.", gamma=gamma, hint=tr(hint)))
    shown = min_snr_weight(noise_scheduler, timesteps, 5.0).tolist()
    weights = ", ".join(f"t={t}: {w:.3f}" for t, w in zip(SNR_TIMESTEPS, shown))
    return verdict(True, tr("{what} matches the training code ({weights}, gamma 5).", what=what, weights=weights), "")
