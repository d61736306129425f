"""What the learner's machine has: library versions, GPU, free disk. Printed by lesson 00."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

LIBRARIES = (
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "accelerate",
    "datasets",
    "huggingface_hub",
    "safetensors",
)


def versions(names=LIBRARIES) -> dict[str, str]:
    """Installed version of each library, or 'missing'."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def gpu_info() -> str:
    """A line describing the GPU (name, memory), or why there is none."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        return (
            f"{props.name}, {total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free), "
            f"compute capability {props.major}.{props.minor}"
        )
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "Apple silicon GPU (mps)"
    return "no GPU: lessons run in smoke mode on the CPU"


def free_disk_gib(path: str | Path) -> float:
    """Free space, in GiB, on the disk holding `path` (its nearest existing parent)."""
    path = Path(path)
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 2**30


def report(cache_dir: str | Path) -> None:
    """Print versions, GPU and free disk where the hub cache lives."""
    for name, version in versions().items():
        print(f"  {name:<16} {version}")
    print(f"  {'GPU':<16} {gpu_info()}")
    print(f"  {'free disk':<16} {free_disk_gib(cache_dir):.1f} GiB at {cache_dir}")
