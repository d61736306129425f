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
    return "none found (CPU only)"


def free_disk_gib(path: str | Path) -> float:
    """Free space, in GiB, on the disk holding `path` (its nearest existing parent)."""
    path = Path(path)
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 2**30


def mode_line(mode: str, rehearsal: bool, device: str) -> str:
    """How the lessons will run: the mode setup() chose (course.mode) and whether it is a rehearsal."""
    if rehearsal:
        return f"full mode, rehearsal: full-size models, every loop cut to 2 steps, on {device}"
    if mode == "full":
        return f"full mode: real checkpoints, full sizes and step counts, on {device}"
    return f"smoke mode: the course's small models, few steps, small images, on {device}"


def report(cache_dir: str | Path, course=None) -> None:
    """Print versions, GPU, free disk where the hub cache lives and, given the `Course` of setup(), its mode."""
    for name, version in versions().items():
        print(f"  {name:<16} {version}")
    print(f"  {'GPU':<16} {gpu_info()}")
    print(f"  {'free disk':<16} {free_disk_gib(cache_dir):.1f} GiB at {cache_dir}")
    if course is not None:
        print(f"  {'lessons run in':<16} {mode_line(course.mode, course.rehearsal, course.device)}")
