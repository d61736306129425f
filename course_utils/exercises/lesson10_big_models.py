"""Checks for lesson 10's exercises: the bytes of a model at a given number of bits per weight, a pipeline
quantization config for two components, and layerwise casting on a UNet. Each prints what differs and returns True or
False; none loads a model."""

from __future__ import annotations

from typing import Any, Callable

from course_utils.exercises import not_attempted, verdict

BITS = (16, 8, 4.5)
WANTED = {"transformer", "text_encoder_3"}


def check_weight_gb(fn: Callable | None) -> bool:
    """Pass when fn(parameters, bits) gives parameters x bits / 8 / 1e9 for FLUX.1-dev's transformer."""
    from course_utils.model_sizes import component_parameters

    if fn is None:
        return not_attempted("my_weight_gb(parameters, bits)")
    n = component_parameters("flux-dev")["transformer"]
    for bits in BITS:
        expected = n * bits / 8 / 1e9
        try:
            given = float(fn(n, bits))
        except Exception as err:  # a learner's bug is a verdict, not a crash
            return verdict(False, "", f"my_weight_gb({n}, {bits}) raised {type(err).__name__}: {err}.")
        if abs(given - expected) <= 1e-3 * expected:
            continue
        if abs(given - expected * 8) <= 1e-3 * expected * 8:
            hint = "that counts bits, not bytes: divide by 8"
        elif abs(given - n * bits / 8 / 2**30) <= 1e-3 * expected:
            hint = "that is GiB (2**30 bytes); the course's tables use GB, 10**9 bytes"
        elif abs(given - n * bits / 8) <= 1e-3 * n * bits / 8:
            hint = "that is bytes; divide by 1e9 for GB"
        else:
            hint = "expected parameters * bits / 8 / 1e9"
        return verdict(False, "", f"at {bits} bits you gave {given:.3g} GB, expected {expected:.2f} GB: {hint}.")
    sizes = ", ".join(f"{n * b / 8 / 1e9:.1f} GB at {b} bits" for b in BITS)
    return verdict(True, f"FLUX.1-dev's transformer ({n / 1e9:.1f} B weights): {sizes}.", "")


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
        return not_attempted("my_config = PipelineQuantizationConfig(...)")
    if not isinstance(config, PipelineQuantizationConfig):
        return verdict(False, "", f"my_config is a {type(config).__name__}; expected a PipelineQuantizationConfig.")
    names, backends = _chosen(config)
    real = set(pipeline_components(folder))
    if names - real:
        unknown = ", ".join(sorted(names - real))
        return verdict(False, "", f"{unknown}: no such component. The pipeline has: {', '.join(sorted(real))}.")
    if "text_encoder_2" in names and "text_encoder_3" not in names:
        return verdict(False, "", "text_encoder_2 is the second CLIP encoder; T5 is text_encoder_3.")
    if names != WANTED:
        return verdict(False, "", f"you quantize {sorted(names)}; expected {sorted(WANTED)}.")
    if not backends <= {"TorchAoConfig", "torchao"}:
        return verdict(False, "", f"the backend is {sorted(backends)}; use TorchAoConfig(Int8WeightOnlyConfig()).")
    return verdict(True, "the transformer and T5 get int8 weights: together about 15 of SD 3.5 Large's 28 GB.", "")


def check_layerwise_casting(pipe: Any, compute_dtype) -> bool:
    """Pass when pipe.unet stores its layers in bfloat16 with a layerwise casting hook computing in compute_dtype."""
    import torch

    if pipe is None:
        return not_attempted("my_pipe with unet.enable_layerwise_casting(...)")
    unet = getattr(pipe, "unet", None)
    if unet is None:
        return verdict(False, "", f"my_pipe is a {type(pipe).__name__} without a unet; use sd_pipes['reference'].")
    hooks = [
        m._diffusers_hook.get_hook("layerwise_casting")
        for m in unet.modules()
        if hasattr(m, "_diffusers_hook") and m._diffusers_hook.get_hook("layerwise_casting") is not None
    ]
    dtypes = {p.dtype for p in unet.parameters()}
    if not hooks:
        if dtypes == {torch.bfloat16}:
            hint = "unet.to(torch.bfloat16) casts everything and computes in bf16 too; use enable_layerwise_casting"
        else:
            hint = "call pipe.unet.enable_layerwise_casting(storage_dtype=..., compute_dtype=...)"
        return verdict(False, "", f"the UNet has no layerwise casting hook: {hint}.")
    storage = {h.storage_dtype for h in hooks}
    compute = {h.compute_dtype for h in hooks}
    if storage != {torch.bfloat16}:
        return verdict(False, "", f"the storage dtype is {sorted(map(str, storage))}; the exercise asks for bfloat16.")
    if compute != {compute_dtype}:
        return verdict(
            False, "", f"the compute dtype is {sorted(map(str, compute))}; use course.dtype, {compute_dtype}."
        )
    stored = sum(p.numel() for p in unet.parameters() if p.dtype == torch.bfloat16)
    total = sum(p.numel() for p in unet.parameters())
    return verdict(
        True, f"{len(hooks)} layers cast; {stored / total:.0%} of the UNet's weights stored in bfloat16.", ""
    )
