"""Checks for lesson 06's exercises (cross-attention heat maps)."""

from __future__ import annotations

from typing import Sequence

import torch

from course_utils.exercises import not_attempted, verdict
from course_utils.i18n import tr


def check_word_positions(tokenizer, prompt: str, word: str, answer: Sequence[int] | None) -> bool:
    """Pass when `answer` lists the context positions of all BPE pieces of `word` in `prompt`."""
    from course_utils.attention import word_positions

    if answer is None:
        return not_attempted(tr("the token positions of {word!r}", word=word))
    expected = word_positions(tokenizer, prompt, word)
    try:
        given = [int(p) for p in answer]
    except (TypeError, ValueError):
        return verdict(
            False,
            "",
            tr("{answer!r} is not a list of positions: give a list of ints, e.g. [2, 3].", answer=answer),
        )
    if given == expected:
        pieces = tokenizer.convert_ids_to_tokens(tokenizer(prompt).input_ids)
        found = [pieces[p] for p in expected]
        return verdict(
            True,
            tr("{word!r} sits at positions {expected}: {pieces}.", word=word, expected=expected, pieces=found),
            "",
        )
    if [p + 1 for p in given] == expected:
        hint = tr("each position is one too small: position 0 holds <|startoftext|>, so the prompt starts at 1")
    elif set(given) < set(expected):
        hint = tr(
            "you found {found} of its {total} pieces: a word runs until the piece ending in '</w>'",
            found=len(given),
            total=len(expected),
        )
    else:
        hint = tr("tokenize the prompt, remember <|startoftext|> at position 0, and collect the word's pieces")
    return verdict(False, "", tr("{given} is not it: {hint}.", given=given, hint=hint))


def check_manual_map(
    trace, prompt: str, word: str, answer: torch.Tensor | None, layers=None, steps=None, index: int = 0
) -> bool:
    """Pass when `answer` equals trace.word_map(prompt, word, ...) for the same layers and steps."""
    if answer is None:
        return not_attempted(tr("the heat map of {word!r} built by hand", word=word))
    expected = trace.word_map(prompt, word, index=index, layers=layers, steps=steps)
    answer = torch.as_tensor(answer).detach().float().cpu().squeeze()
    if answer.shape != expected.shape:
        return verdict(
            False,
            "",
            tr(
                "your map has shape {shape}, expected {expected} (the image size): upsample with F.interpolate.",
                shape=tuple(answer.shape),
                expected=tuple(expected.shape),
            ),
        )
    if not torch.isfinite(answer).all():
        return verdict(False, "", tr("your map contains NaN or inf values."))
    if answer.min() < -1e-4 or answer.max() > 1 + 1e-4:
        return verdict(
            False,
            "",
            tr(
                "your map runs from {low:.3g} to {high:.3g}: normalise it to [0, 1] (min -> 0, max -> 1).",
                low=answer.min(),
                high=answer.max(),
            ),
        )
    error = (answer - expected).abs().max().item()
    return verdict(
        error < 1e-3,
        tr("your map matches trace.word_map (largest difference {error:.1e}).", error=error),
        tr(
            "your map differs from trace.word_map by up to {error:.3f}: sum the word's pieces, average the chosen "
            "records, upsample each to the image size (bilinear), then normalise.",
            error=error,
        ),
    )


def start_token_shares(trace, index: int = 0) -> tuple[float, float]:
    """Share of attention given to <|startoftext|>: mean over records of the per-record pixel mean,
    and pooled over all pixels."""
    per_record = [r.maps[index, 0].float() for r in trace.records]
    by_record = torch.stack([m.mean() for m in per_record]).mean().item()
    pooled = (sum(m.sum() for m in per_record) / sum(m.numel() for m in per_record)).item()
    return by_record, pooled


def check_start_token_share(trace, answer: float | None, index: int = 0) -> bool:
    """Pass when `answer` is the average attention probability that pixels give to <|startoftext|> (position 0)."""
    if answer is None:
        return not_attempted(tr("the share of attention that goes to <|startoftext|>"))
    if isinstance(answer, (str, bytes, bool)):  # float("0.5") would pass text on as if it were the number
        return verdict(
            False,
            "",
            tr("{answer!r} is not one number: give the share as a float, e.g. 0.25, not text.", answer=answer),
        )
    try:
        answer = float(answer)
    except (TypeError, ValueError, RuntimeError):
        return verdict(
            False, "", tr("{answer!r} is not one number: give the share as a float, e.g. 0.25.", answer=answer)
        )
    expected = start_token_shares(trace, index)
    tokens = trace.records[0].maps.shape[1]
    uniform = abs(answer - 1 / tokens) <= 0.01 / tokens
    if not uniform and any(abs(answer - e) <= 0.01 * e for e in expected):
        return verdict(
            True,
            tr(
                "{answer:.1%} of the attention goes to <|startoftext|>; a uniform spread would give it {uniform:.1%}.",
                answer=answer,
                uniform=1 / tokens,
            ),
            "",
        )
    if not 0 <= answer <= 1:
        hint = tr("a share of probabilities lies between 0 and 1")
    elif uniform:
        hint = tr(
            "1/{tokens} is what uniform attention would give; measure it from trace.records instead", tokens=tokens
        )
    else:
        hint = tr(
            "average maps[index, 0] (position 0 is <|startoftext|>) "
            "over the pixels of every record, then over the records"
        )
    off = min(abs(answer - e) / e for e in expected)
    return verdict(
        False,
        "",
        tr(
            "{answer:.4f} is not it ({off:.0%} away from the measured share): {hint}.",
            answer=answer,
            off=off,
            hint=hint,
        ),
    )
