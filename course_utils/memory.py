"""Lesson 03's memory planning and measuring: which parts of a pipeline take how much GPU memory, which
options (attention slicing, VAE tiling, CPU offload) fit a generation into a GPU, and timing a call."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

GIB = 2**30
# Rough activation memory of one SD 1.x generation at 512x512 in 16-bit, with classifier-free guidance (batch 2) and
# SDPA attention, split into the UNet loop and the VAE decode (the larger part); both grow with the pixel count. With
# VAE tiling the decode works on one tile at a time. The lesson's table measures the real figures on your GPU.
UNET_ACTIVATION_BYTES_512 = GIB // 4
VAE_ACTIVATION_BYTES_512 = 3 * GIB // 4
HEADROOM = 1.2  # keep 20 % of the free memory spare for the CUDA context, fragmentation and other tensors


# ------------------------------------------------------------------------------------------- weights and sharing
def module_components(pipe) -> dict[str, Any]:
    """The pipeline's torch modules (unet, vae, text_encoder, ...), by name."""
    import torch

    return {name: c for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}


def component_bytes(pipe) -> dict[str, int]:
    """Bytes of parameters and buffers of each torch component, in its current dtype."""
    return {
        name: sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
        for name, module in module_components(pipe).items()
    }


def unique_weight_bytes(*pipes) -> int:
    """Bytes of distinct weight storage across pipelines: tensors shared between them count once."""
    seen: dict[int, int] = {}
    for pipe in pipes:
        for module in module_components(pipe).values():
            for t in (*module.parameters(), *module.buffers()):
                seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def shared_components(a, b) -> dict[str, bool]:
    """For each component name the two pipelines both have: True when it is the very same object."""
    ca, cb = a.components, b.components
    return {name: ca[name] is cb[name] for name in ca if name in cb and ca[name] is not None}


# -------------------------------------------------------------------------------------------------- memory plan
def attention_backend(pipe) -> str:
    """Names of the UNet's attention processors, e.g. 'AttnProcessor2_0 (PyTorch SDPA)'."""
    names = sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()})
    labels = {"AttnProcessor2_0": "PyTorch SDPA", "AttnProcessor": "plain matmul, no SDPA"}
    return ", ".join(f"{n} ({labels[n]})" if n in labels else n for n in names)


def activation_bytes(height: int, width: int, element_size: int = 2, vae_tiling: bool = False) -> int:
    """Rule-of-thumb activation memory of one SD generation at height x width (UNet loop + VAE decode)."""
    scale = element_size / 2
    pixels = height * width / 512**2
    vae = VAE_ACTIVATION_BYTES_512 * (min(pixels, 1.0) if vae_tiling else pixels)
    return int((UNET_ACTIVATION_BYTES_512 * pixels + vae) * scale)


@dataclass
class MemoryPlan:
    """What fit_to_gpu chose, and why: device, offload mode, VAE tiling, and the figures behind the choice."""

    device: str
    offload: str  # "none", "model" or "sequential"
    vae_tiling: bool
    free_bytes: int | None
    weights_bytes: int
    needed_bytes: int
    attention: str = ""
    reasons: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        gib = lambda b: "n/a" if b is None else f"{b / GIB:.2f} GiB"  # noqa: E731
        lines = [
            f"  device         : {self.device}",
            f"  free memory    : {gib(self.free_bytes)}",
            f"  weights        : {gib(self.weights_bytes)}",
            f"  estimated need : {gib(self.needed_bytes)} (weights + activations, rule of thumb)",
            f"  CPU offload    : {self.offload}",
            f"  VAE tiling     : {'on' if self.vae_tiling else 'off'}",
            f"  attention      : {self.attention or 'unknown'}",
        ]
        return "\n".join(["fit_to_gpu chose:", *lines, *("  - " + r for r in self.reasons)])


def sd15_component_bytes(element_size: int = 2) -> dict[str, int]:
    """Weight bytes of the real SD 1.5 unet, vae and text encoder, counted on the meta device (no memory used)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from course_utils.models import architectures as arch

    with torch.device("meta"):
        models = {
            "unet": UNet2DConditionModel(**arch.SD_UNET["full"]),
            "vae": AutoencoderKL(**arch.SD_VAE["full"]),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**arch.CLIP_TEXT_COMMON, **arch.SD_TEXT_ENCODER["full"])),
        }
    return {name: sum(p.numel() for p in m.parameters()) * element_size for name, m in models.items()}


def plan_memory(
    device: str,
    free_bytes: int | None,
    sizes: dict[str, int],
    height: int = 512,
    width: int = 512,
    element_size: int = 2,
) -> MemoryPlan:
    """Choose offload and VAE tiling from the free memory and the component sizes (pure: no GPU needed)."""
    weights = sum(sizes.values())
    if device != "cuda" or free_bytes is None:
        reasons = [
            f"on {device} there is nothing to do: the weights live in ordinary RAM, CPU offload needs a CUDA GPU, "
            "and attention already uses PyTorch's scaled_dot_product_attention (SDPA)."
        ]
        needed = weights + activation_bytes(height, width, element_size)
        return MemoryPlan(device, "none", False, free_bytes, weights, needed, reasons=reasons)
    reasons = []
    # The VAE decoder's activations dominate at large sizes: tile when they would take over a quarter of free memory.
    # (Tiling changes nothing for images no larger than one tile, 512 px for SD 1.x.)
    full_decode = activation_bytes(height, width, element_size) - activation_bytes(height, width, element_size, True)
    tiling = full_decode > 0 and activation_bytes(height, width, element_size) > free_bytes / 4
    activations = activation_bytes(height, width, element_size, vae_tiling=tiling)
    needed = weights + activations
    largest = max(sizes.values(), default=0)
    if free_bytes >= needed * HEADROOM:
        offload = "none"
        reasons.append("everything fits on the GPU: pipe.to('cuda'), the fastest option.")
    elif free_bytes >= (largest + activations) * HEADROOM:
        offload = "model"
        reasons.append(
            "the whole pipeline does not fit, its largest model does: enable_model_cpu_offload() keeps one model "
            "on the GPU at a time (a little slower; do not call .to('cuda') afterwards)."
        )
    else:
        offload = "sequential"
        reasons.append(
            "even the largest model does not fit: enable_sequential_cpu_offload() streams weights layer by layer "
            "(works on very small GPUs, but several times slower)."
        )
    if offload != "none" and not tiling and full_decode > 0:
        tiling = True  # memory is tight anyway: tiling costs little time and caps the decode's peak
        activations = activation_bytes(height, width, element_size, vae_tiling=True)
        needed = weights + activations
    if tiling:
        reasons.append("pipe.vae.enable_tiling(): decode the latents tile by tile to cap the VAE's peak memory.")
    return MemoryPlan("cuda", offload, tiling, free_bytes, weights, needed, reasons=reasons)


def apply_plan(pipe, plan: MemoryPlan):
    """Apply a MemoryPlan to `pipe` (move it, or enable offload) and return the pipeline."""
    if plan.offload == "model":
        pipe.enable_model_cpu_offload()
    elif plan.offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    else:
        pipe.to(plan.device)
    if plan.vae_tiling:
        pipe.vae.enable_tiling()  # on the VAE itself: the pipeline-level tiling method was deprecated
    plan.attention = attention_backend(pipe)
    return pipe


def free_gpu_bytes(device: str) -> int | None:
    """Free memory on the current CUDA device, or None for other devices."""
    import torch

    return torch.cuda.mem_get_info()[0] if device == "cuda" else None


def fit_to_gpu(pipe, course, height: int = 512, width: int = 512, free_bytes: int | None = None) -> MemoryPlan:
    """Pick and apply the memory options for `pipe` on course.device from the free GPU memory; print what it chose."""
    import torch

    device = course.device
    free = free_gpu_bytes(device) if free_bytes is None else free_bytes
    element_size = torch.tensor([], dtype=course.dtype).element_size()
    plan = plan_memory(device, free, component_bytes(pipe), height, width, element_size)
    apply_plan(pipe, plan)
    print(plan)
    return plan


def reset_memory_options(pipe, dtype=None):
    """Undo offload hooks and VAE tiling and bring the pipeline back to CPU memory (in `dtype` if given), so that
    every memory option is measured from the same starting point."""
    pipe.remove_all_hooks()
    pipe.vae.disable_tiling()
    pipe.to("cpu")
    return cast_pipeline(pipe, dtype) if dtype is not None else pipe


def cast_pipeline(pipe, dtype):
    """Cast every model of `pipe` to `dtype` in place (silencing diffusers' advice to reload, which is for keeping
    some layers in float32: the SD 1.x models have none)."""
    from diffusers.utils import logging

    if pipe.dtype == dtype:
        return pipe
    previous = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        return pipe.to(dtype=dtype)
    finally:
        logging.set_verbosity(previous)


# ------------------------------------------------------------------------------------------------------ measuring
@dataclass(frozen=True)
class Measurement:
    """Wall-clock seconds of one run and, on CUDA, its peak allocated memory (torch.cuda.max_memory_allocated)."""

    seconds: float
    peak_bytes: int | None
    result: Any = None

    @property
    def peak_gib(self) -> str:
        """Peak memory as text, or an explanation when it cannot be measured."""
        return "n/a (CPU)" if self.peak_bytes is None else f"{self.peak_bytes / GIB:.2f} GiB"


def measure(run: Callable[[], Any], device: str) -> Measurement:
    """Time `run()` and, on CUDA, record the peak GPU memory it allocated (synchronising before and after)."""
    import torch

    gc.collect()
    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = run()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return Measurement(seconds, torch.cuda.max_memory_allocated() if cuda else None, result)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (renders as a table in Jupyter through IPython.display.Markdown)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
