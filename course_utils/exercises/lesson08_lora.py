"""Checks for lesson 08's exercises: a LoRA layer's output by hand, the number of trainable LoRA
weights, and the weight that fuse_lora writes. Each compares with what peft computes on the same
layer, prints what differs and returns True or False."""

from __future__ import annotations

from typing import Callable

import torch

from course_utils.exercises import not_attempted, verdict
from course_utils.i18n import tr

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def _lora_layer(in_features: int = 24, out_features: int = 16, rank: int = 4, alpha: float = 8.0):
    """A peft LoRA Linear with random W, A and B (B is zero at peft's start; here it is not)."""
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("to_q", torch.nn.Linear(in_features, out_features))
    model = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=["to_q"]), model)
    layer = model.to_q
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    return layer


def _call(fn: Callable, *args) -> tuple[object, str | None]:
    """fn(*args), or the error it raised as a sentence (a bug is a wrong answer, not a crash)."""
    try:
        return fn(*args), None
    except Exception as err:
        return None, tr("it raised {error_type}: {error_text}", error_type=type(err).__name__, error_text=err)


def check_lora_forward(fn: Callable | None) -> bool:
    """Pass when fn(x, W, bias, A, B, alpha, rank) equals peft's LoRA layer output for x."""
    if fn is None:
        return not_attempted(tr("the LoRA layer's output by hand"))
    layer = _lora_layer()
    W, bias = layer.base_layer.weight.detach(), layer.base_layer.bias.detach()
    A, B = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    x = torch.randn(3, W.shape[1], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = layer(x)
    got, error = _call(fn, x, W, bias, A, B, 8.0, 4)
    if error:
        return verdict(False, "", error)
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return verdict(
            False,
            "",
            tr(
                "expected a tensor of shape {shape}, got {got}.",
                shape=tuple(expected.shape),
                got=getattr(got, "shape", type(got).__name__),
            ),
        )
    diff = (got - expected).abs().max().item()
    if diff < 1e-4:
        return verdict(True, tr("equal to peft's output (largest difference {diff:.1e}).", diff=diff), "")
    base = x @ W.T + bias
    if (got - base).abs().max() < 1e-4:
        hint = tr("that is the frozen layer alone: add (alpha / rank) * x @ A.T @ B.T")
    elif (got - (base + x @ A.T @ B.T)).abs().max() < 1e-4:
        hint = tr("the update is scaled by alpha / rank (here 8 / 4 = 2)")
    else:
        hint = tr("W x + bias + (alpha / rank) B A x, or x @ W.T + bias + alpha / rank * x @ A.T @ B.T")
    return verdict(False, "", tr("largest difference {diff:.3g}: {hint}.", diff=diff, hint=hint))


def _targeted(unet, targets: list[str]) -> list:
    """The layers named with one of `targets` (a plain Linear, or peft's LoRA wrapper of one)."""
    return [
        m for n, m in unet.named_modules() if hasattr(m, "in_features") and any(n.endswith("." + t) for t in targets)
    ]


def expected_lora_count(unet, rank: int, targets: list[str] = TARGETS) -> int:
    """rank * (in + out) summed over the Linear layers whose names end in one of `targets`."""
    return sum(rank * (m.in_features + m.out_features) for m in _targeted(unet, targets))


def check_lora_count(answer: int | None, unet, rank: int) -> bool:
    """Pass when `answer` is the weight count of a rank-`rank` LoRA on the attention projections."""
    if answer is None:
        return not_attempted(tr("the number of LoRA weights"))
    expected = expected_lora_count(unet, rank)
    if answer == expected:
        return verdict(True, tr("{answer:,}: r * (in + out) for each of the targeted layers.", answer=answer), "")
    square = sum(m.in_features * m.out_features for m in _targeted(unet, TARGETS))
    if answer == square:
        hint = tr("that is every weight of those layers (in * out each); a LoRA trains r * (in + out)")
    elif answer == 2 * expected or answer * 2 == expected:
        hint = tr("A has r * in weights and B has out * r: count each once")
    else:
        hint = tr("add rank * (in_features + out_features) for each to_q, to_k, to_v and to_out.0")
    return verdict(
        False,
        "",
        tr("{answer:,} is not it (expected {expected:,}): {hint}.", answer=answer, expected=expected, hint=hint),
    )


def check_fused_weight(fn: Callable | None) -> bool:
    """Pass when fn(layer, scale) returns the weight that merging the LoRA at `scale` writes."""
    if fn is None:
        return not_attempted(tr("the fused weight"))
    layer = _lora_layer()
    for scale in (1.0, 0.5):
        got, error = _call(fn, layer, scale)
        if error:
            return verdict(False, "", error)
        with torch.no_grad():
            layer.set_scale("default", scale)
            layer.merge()
            expected = layer.base_layer.weight.detach().clone()
            layer.unmerge()
            layer.set_scale("default", 1.0)
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            return verdict(
                False,
                "",
                tr(
                    "expected a weight of shape {shape}, got {got}.",
                    shape=tuple(expected.shape),
                    got=getattr(got, "shape", type(got).__name__),
                ),
            )
        diff = (got.detach() - expected).abs().max().item()
        if diff > 1e-4:
            return verdict(
                False,
                "",
                tr(
                    "at scale {scale} the largest difference is {diff:.3g}: the fused weight is "
                    "W + scale * (alpha / r) * B @ A (alpha / r is layer.scaling['default'] at scale 1).",
                    scale=scale,
                    diff=diff,
                ),
            )
    return verdict(True, tr("equal to what peft's merge writes, at scale 1 and 0.5."), "")
