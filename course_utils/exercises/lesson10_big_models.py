"""Checks for lesson 10's exercises: the bytes of a model at a given number of bits per weight, a pipeline
quantization config for two components, and layerwise casting on a UNet. Each prints what differs and returns True or
False; none loads a model."""

from __future__ import annotations

from typing import Any, Callable

from course_utils.exercises import not_attempted, verdict
from course_utils.i18n import tr

BITS = (16, 8, 4.5)
WANTED = {"transformer", "text_encoder_3"}


def check_weight_gb(fn: Callable | None) -> bool:
    """Pass when fn(parameters, bits) gives parameters x bits / 8 / 1e9 for FLUX.1-dev's transformer."""
    from course_utils.model_sizes import component_parameters

    if fn is None:
        return not_attempted(tr("my_weight_gb(parameters, bits)"))
    n = component_parameters("flux-dev")["transformer"]
    for bits in BITS:
        expected = n * bits / 8 / 1e9
        try:
            given = float(fn(n, bits))
        except Exception as err:  # a learner's bug is a verdict, not a crash
            return verdict(
                False,
                "",
                tr(
                    "my_weight_gb({n}, {bits}) raised {error}: {err}.",
                    n=n,
                    bits=bits,
                    error=type(err).__name__,
                    err=err,
                ),
            )
        if abs(given - expected) <= 1e-3 * expected:
            continue
        if abs(given - expected * 8) <= 1e-3 * expected * 8:
            hint = tr("that counts bits, not bytes: divide by 8")
        elif abs(given - n * bits / 8 / 2**30) <= 1e-3 * expected:
            hint = tr("that is GiB (2**30 bytes); the course's tables use GB, 10**9 bytes")
        elif abs(given - n * bits / 8) <= 1e-3 * n * bits / 8:
            hint = tr("that is bytes; divide by 1e9 for GB")
        else:
            hint = tr("expected parameters * bits / 8 / 1e9")
        return verdict(
            False,
            "",
            tr(
                "at {bits} bits you gave {given:.3g} GB, expected {expected:.2f} GB: {hint}.",
                bits=bits,
                given=given,
                expected=expected,
                hint=hint,
            ),
        )
    sizes = ", ".join(tr("{gb:.1f} GB at {bits} bits", gb=n * b / 8 / 1e9, bits=b) for b in BITS)
    return verdict(
        True, tr("FLUX.1-dev's transformer ({billions:.1f} B weights): {sizes}.", billions=n / 1e9, sizes=sizes), ""
    )


def _chosen(config) -> tuple[set[str], set[str]]:
    """(the component names a PipelineQuantizationConfig quantizes, the backends it uses)."""
    if config.quant_mapping:
        return set(config.quant_mapping), {type(c).__name__ for c in config.quant_mapping.values()}
    return set(config.components_to_quantize or []), {str(config.quant_backend)}


def check_quant_config(config: Any, folder) -> bool:
    """Pass when `config` quantizes exactly the transformer and text_encoder_3 (T5) with torchao."""
    from diffusers import PipelineQuantizationConfig

    from course_utils.big_models import pipeline_components

    if config is None:
        return not_attempted(tr("my_config = PipelineQuantizationConfig(...)"))
    if not isinstance(config, PipelineQuantizationConfig):
        return verdict(
            False,
            "",
            tr("my_config is a {kind}; expected a PipelineQuantizationConfig.", kind=type(config).__name__),
        )
    names, backends = _chosen(config)
    real = set(pipeline_components(folder))
    if names - real:
        unknown = ", ".join(sorted(names - real))
        return verdict(
            False,
            "",
            tr(
                "{unknown}: no such component. The pipeline has: {real}.", unknown=unknown, real=", ".join(sorted(real))
            ),
        )
    if "text_encoder_2" in names and "text_encoder_3" not in names:
        return verdict(False, "", tr("text_encoder_2 is the second CLIP encoder; T5 is text_encoder_3."))
    if names != WANTED:
        return verdict(
            False, "", tr("you quantize {names}; expected {wanted}.", names=sorted(names), wanted=sorted(WANTED))
        )
    if not backends <= {"TorchAoConfig", "torchao"}:
        return verdict(
            False,
            "",
            tr("the backend is {backends}; use TorchAoConfig(Int8WeightOnlyConfig()).", backends=sorted(backends)),
        )
    return verdict(True, tr("the transformer and T5 get int8 weights: together about 15 of SD 3.5 Large's 28 GB."), "")


def check_layerwise_casting(pipe: Any, compute_dtype) -> bool:
    """Pass when pipe.unet stores its layers in bfloat16 with a layerwise casting hook computing in compute_dtype."""
    import torch

    if pipe is None:
        return not_attempted(tr("my_pipe with unet.enable_layerwise_casting(...)"))
    unet = getattr(pipe, "unet", None)
    if unet is None:
        return verdict(
            False,
            "",
            tr("my_pipe is a {kind} without a unet; use sd_pipes['reference'].", kind=type(pipe).__name__),
        )
    hooks = [
        m._diffusers_hook.get_hook("layerwise_casting")
        for m in unet.modules()
        if hasattr(m, "_diffusers_hook") and m._diffusers_hook.get_hook("layerwise_casting") is not None
    ]
    dtypes = {p.dtype for p in unet.parameters()}
    if not hooks:
        if dtypes == {torch.bfloat16}:
            hint = tr("unet.to(torch.bfloat16) casts everything and computes in bf16 too; use enable_layerwise_casting")
        else:
            hint = tr("call pipe.unet.enable_layerwise_casting(storage_dtype=..., compute_dtype=...)")
        return verdict(False, "", tr("the UNet has no layerwise casting hook: {hint}.", hint=hint))
    storage = {h.storage_dtype for h in hooks}
    compute = {h.compute_dtype for h in hooks}
    if storage != {torch.bfloat16}:
        return verdict(
            False,
            "",
            tr("the storage dtype is {storage}; the exercise asks for bfloat16.", storage=sorted(map(str, storage))),
        )
    if compute != {compute_dtype}:
        return verdict(
            False,
            "",
            tr(
                "the compute dtype is {compute}; use course.dtype, {compute_dtype}.",
                compute=sorted(map(str, compute)),
                compute_dtype=compute_dtype,
            ),
        )
    stored = sum(p.numel() for p in unet.parameters() if p.dtype == torch.bfloat16)
    total = sum(p.numel() for p in unet.parameters())
    return verdict(
        True,
        tr(
            "{layers} layers cast; {share:.0%} of the UNet's weights stored in bfloat16.",
            layers=len(hooks),
            share=stored / total,
        ),
        "",
    )
