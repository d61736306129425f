"""Measuring memory and time for lessons 03 and 10: the bytes each component of a pipeline takes, which weights two
pipelines share, the attention processors in use, and the time and peak GPU memory of a call. It measures only: the
lessons choose offloading, tiling and quantization with diffusers' own calls."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

GIB = 2**30


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


# ------------------------------------------------------------------------------------------------------ attention
def attention_backend(pipe) -> str:
    """Names of the UNet's attention processors, e.g. 'AttnProcessor2_0 (PyTorch SDPA)'."""
    names = sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()})
    labels = {"AttnProcessor2_0": "PyTorch SDPA", "AttnProcessor": "plain matmul, no SDPA"}
    return ", ".join(f"{n} ({labels[n]})" if n in labels else n for n in names)


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
