"""Checks for lesson 02's exercises: the shape of the starting latents, the text embeddings for classifier-free
guidance, and the guidance formula. Each prints what differs and returns True or False."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from course_utils.exercises import not_attempted, verdict
from course_utils.i18n import msg, tr

CFG_SCALES = (0.0, 1.0, 7.5)


def _as_shape(answer) -> tuple | None:
    """A shape given as a tuple, list, torch.Size or a tensor (whose shape is taken); None if it is none of these."""
    if isinstance(answer, torch.Tensor):
        return tuple(answer.shape)
    if isinstance(answer, (tuple, list, torch.Size)) and all(isinstance(n, int) for n in answer):
        return tuple(answer)
    return None


def vae_scale_factor(vae) -> int:
    """How many pixels one latent covers along each side: 2 per down block after the first (8 for SD)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def expected_latent_shape(unet, vae, height: int, width: int, batch_size: int = 1) -> tuple[int, int, int, int]:
    """(batch, latent channels, height / 8, width / 8): the shape StableDiffusionPipeline.prepare_latents uses."""
    factor = vae_scale_factor(vae)
    return (batch_size, unet.config.in_channels, height // factor, width // factor)


def _latent_shape_hint(given: tuple, expected: tuple, height: int, width: int, factor: int) -> str:
    """Name the most likely mistake behind a wrong latent shape."""
    batch, channels, h, w = expected
    if len(given) != 4:
        return tr("latents have 4 dimensions (batch, channels, height, width); yours has {ndim}", ndim=len(given))
    if given[0] == 2 * batch and given[1:] == expected[1:]:
        return tr(
            "the batch is doubled: the starting latents hold one sample per image; classifier-free guidance "
            "doubles them only inside the loop, with torch.cat([latents] * 2)"
        )
    if given[0] != batch:
        return tr("the batch should be {batch}, one latent per image", batch=batch)
    if given[1] == 3 != channels:
        return tr(
            "latents have unet.config.in_channels = {channels} channels, not 3 "
            "(3 is for RGB pixels, but the UNet works in latent space)",
            channels=channels,
        )
    if given[1] != channels:
        return tr(
            "latents have unet.config.in_channels = {channels} channels, not {given}",
            channels=channels,
            given=given[1],
        )
    if given[2:] == (height, width):
        return tr(
            "height and width must be divided by the VAE's scale factor ({factor}): the UNet works on latents",
            factor=factor,
        )
    if given[2:] == (w, h) and h != w:
        return tr("height and width are swapped: PyTorch images are (batch, channels, height, width)")
    return tr(
        "the spatial size should be (height // {factor}, width // {factor}) = ({h}, {w})", factor=factor, h=h, w=w
    )


def check_latent_shape(answer, unet, vae, height: int, width: int, batch_size: int = 1) -> bool:
    """Pass when `answer` (a shape, or a tensor) is the shape of the starting latents for this image size and batch."""
    what = tr(
        "the latent shape for {batch_size} image(s) of {height}x{width} pixels",
        batch_size=batch_size,
        height=height,
        width=width,
    )
    if answer is None:
        return not_attempted(what)
    given = _as_shape(answer)
    expected = expected_latent_shape(unet, vae, height, width, batch_size)
    if given is None:
        return verdict(
            False,
            "",
            tr(
                "expected a shape such as a tuple of 4 ints (or a tensor), got {kind}.",
                kind=type(answer).__name__,
            ),
        )
    if given == expected:
        return verdict(True, tr("{what} is {expected}.", what=what, expected=expected), "")
    hint = _latent_shape_hint(given, expected, height, width, vae_scale_factor(vae))
    return verdict(False, "", tr("{given} is not {what}: {hint}.", given=given, what=what, hint=hint))


@torch.no_grad()
def encode_texts(tokenizer, text_encoder, texts: Sequence[str]) -> torch.Tensor:
    """CLIP embeddings of `texts`, padded to the tokenizer's 77 tokens,
    as StableDiffusionPipeline.encode_prompt does."""
    ids = tokenizer(
        list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to rounding: 1e-3 in fp32; a few units of the last place in bf16/fp16
    (batching changes the rounding)."""
    tol = max(1e-3, 4 * torch.finfo(b.dtype).eps) if b.is_floating_point() else 1e-3
    return a.shape == b.shape and torch.allclose(a.float().cpu(), b.float().cpu(), rtol=tol, atol=tol)


def _embedding_hint(answer: torch.Tensor, tokenizer, text_encoder, prompts: list[str], negatives: list[str]) -> str:
    """Name the most likely mistake behind wrong CFG embeddings (order, interleaving, a missing negative prompt)."""
    batch = len(prompts)
    cond = encode_texts(tokenizer, text_encoder, prompts)
    uncond = encode_texts(tokenizer, text_encoder, negatives)
    if _close(answer, torch.cat([cond, uncond])):
        return tr(
            "the halves are swapped: the unconditional (negative) embeddings come first, because the loop "
            "splits the UNet's output with noise_pred.chunk(2) into (uncond, text)."
        )
    if batch > 1 and _close(answer, torch.stack([uncond, cond], dim=1).flatten(0, 1)):
        return tr(
            "the rows are interleaved (neg 1, prompt 1, neg 2, ...): chunk(2) splits the batch into a first and "
            "a second half, so put all negative rows first, then all prompt rows: torch.cat([uncond, cond])."
        )
    if any(negatives) and _close(answer, torch.cat([encode_texts(tokenizer, text_encoder, [""] * batch), cond])):
        return tr(
            'the first half encodes the empty prompt "": with a negative prompt, encode the negative prompt(s) there.'
        )
    difference = (answer.float().cpu() - torch.cat([uncond, cond]).float().cpu()).abs().max().item()
    return tr(
        'the values differ (max difference {difference:.3g}): tokenize with padding="max_length", '
        "max_length=tokenizer.model_max_length, truncation=True, and take text_encoder(ids)[0].",
        difference=difference,
    )


def _embedding_shape_problem(answer: torch.Tensor, rows: int, tokens: int, hidden: int) -> str | None:
    """What is wrong with the shape of CFG embeddings (translated), or None when it is (rows, tokens, hidden)."""
    if answer.ndim != 3:
        return tr(
            "expected 3 dimensions (rows, tokens, hidden) = ({rows}, {tokens}, {hidden}), got shape {shape}.",
            rows=rows,
            tokens=tokens,
            hidden=hidden,
            shape=tuple(answer.shape),
        )
    if answer.shape[1] != tokens:
        return tr(
            "{given} tokens per row instead of {tokens}: pad every text with "
            'padding="max_length", max_length=tokenizer.model_max_length.',
            given=answer.shape[1],
            tokens=tokens,
        )
    if answer.shape[2] != hidden:
        return tr(
            "hidden size {given} instead of {hidden}: use text_encoder(ids)[0], the "
            "last hidden state (one vector per token), not the pooled output.",
            given=answer.shape[2],
            hidden=hidden,
        )
    if answer.shape[0] != rows:
        return tr(
            "{given} rows instead of {rows}: one unconditional and one conditional "
            "row per prompt, stacked with torch.cat([uncond, cond]).",
            given=answer.shape[0],
            rows=rows,
        )
    return None


def check_text_embeddings(
    answer, tokenizer, text_encoder, prompts: str | Sequence[str], negative_prompts: str | Sequence[str] | None = None
) -> bool:
    """Pass when `answer` holds the embeddings the UNet gets for CFG: torch.cat([negative or "", prompts])."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if negative_prompts is None:
        negatives = [""] * len(prompts)
    else:
        negatives = [negative_prompts] * len(prompts) if isinstance(negative_prompts, str) else list(negative_prompts)
    if len(negatives) != len(prompts):
        raise ValueError(f"check_text_embeddings: {len(prompts)} prompts but {len(negatives)} negative prompts.")
    what = tr("the CFG text embeddings for {n} prompt(s)", n=len(prompts))
    if answer is None:
        return not_attempted(what)
    if not isinstance(answer, torch.Tensor):
        return verdict(False, "", tr("expected a torch.Tensor, got {kind}.", kind=type(answer).__name__))
    rows, tokens, hidden = 2 * len(prompts), tokenizer.model_max_length, text_encoder.config.hidden_size
    problem = _embedding_shape_problem(answer, rows, tokens, hidden)
    if problem is not None:
        return verdict(False, "", problem)
    expected = torch.cat(
        [encode_texts(tokenizer, text_encoder, negatives), encode_texts(tokenizer, text_encoder, prompts)]
    )
    if _close(answer, expected):
        return verdict(
            True, tr("{what} have shape {shape}, negative rows first.", what=what, shape=tuple(expected.shape)), ""
        )
    hint = _embedding_hint(answer, tokenizer, text_encoder, prompts, negatives)
    return verdict(False, "", hint)


def cfg_reference(noise_uncond: torch.Tensor, noise_text: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance as StableDiffusionPipeline computes it."""
    return noise_uncond + guidance_scale * (noise_text - noise_uncond)


def _cfg_hint(fn: Callable, uncond: torch.Tensor, text: torch.Tensor) -> str:
    """Recognise the usual slips in the guidance formula by testing them on the same inputs (the hint, translated)."""
    slips = {
        msg(
            "uncond and text are swapped: start from the unconditional prediction and move towards the text one"
        ): lambda s: text + s * (uncond - text),
        msg(
            "the unconditional prediction is missing in front: the result is uncond + scale * (text - uncond)"
        ): lambda s: s * (text - uncond),
        msg("the scale multiplies the text prediction instead of the difference (text - uncond)"): lambda s: (
            uncond + s * text
        ),
    }
    for hint, slip in slips.items():
        try:
            if all(_close(torch.as_tensor(fn(uncond, text, s)), slip(s)) for s in (0.0, 7.5)):
                return tr(hint)
        except Exception:  # the answer already failed; a crash here only means no slip matched
            break
    return tr("compare with noise_uncond + guidance_scale * (noise_text - noise_uncond)")


def check_cfg(fn: Callable | None) -> bool:
    """Pass when fn(noise_uncond, noise_text, guidance_scale) computes classifier-free guidance for several scales."""
    what = tr("your classifier-free guidance function")
    if fn is None:
        return not_attempted(what)
    generator = torch.Generator().manual_seed(0)
    uncond, text = torch.randn(2, 1, 4, 8, 8, generator=generator)
    for scale in CFG_SCALES:
        try:
            result = fn(uncond.clone(), text.clone(), scale)
        except Exception as err:  # a learner's bug must print, not stop the notebook
            return verdict(
                False,
                "",
                tr(
                    "calling it with guidance_scale={scale} raised {error}: {err}",
                    scale=scale,
                    error=type(err).__name__,
                    err=err,
                ),
            )
        if result is None:
            return not_attempted(tr("your classifier-free guidance function (it returns None)"))
        result = torch.as_tensor(result)
        if result.shape != uncond.shape:
            return verdict(
                False,
                "",
                tr(
                    "it returned shape {shape}; guidance keeps the shape of the noise predictions, {expected}.",
                    shape=tuple(result.shape),
                    expected=tuple(uncond.shape),
                ),
            )
        if not _close(result, cfg_reference(uncond, text, scale)):
            difference = (result.float() - cfg_reference(uncond, text, scale)).abs().max().item()
            return verdict(
                False,
                "",
                tr(
                    "at guidance_scale={scale} it differs by up to {difference:.3g}: {hint}.",
                    scale=scale,
                    difference=difference,
                    hint=_cfg_hint(fn, uncond, text),
                ),
            )
    scales = ", ".join(map(str, CFG_SCALES))
    return verdict(True, tr("{what} matches the pipeline's formula at scales {scales}.", what=what, scales=scales), "")
