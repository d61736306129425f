"""A dataset's rows as training batches, the way torch.utils.data does it: the preprocessing transform (RGB, resize,
flip, ToTensor, Normalize to [-1, 1]), its batched form for `with_transform`, and a seeded DataLoader. Lesson 04
builds each piece by hand first; lesson 05's trainer uses them."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable

from PIL import Image

from course_utils.checks.values import require_positive_int
from course_utils.images import to_rgb

if TYPE_CHECKING:  # importing datasets/torch is slow: done inside the functions that need them
    from datasets import Dataset
    from torch.utils.data import DataLoader


class ToRGB:
    """A torchvision-style transform wrapping to_rgb (a class, not a lambda, so DataLoader workers can pickle it)."""

    def __init__(self, background: tuple[int, int, int] = (255, 255, 255)) -> None:
        self.background = tuple(background)

    def __call__(self, image: Image.Image) -> Image.Image:
        return to_rgb(image, self.background)

    def __repr__(self) -> str:
        return f"ToRGB(background={self.background})"


def preprocess(size: int, flip: bool = True, center_crop: bool = False):
    """The training transform: RGB, Resize to size x size, random horizontal flip, ToTensor, Normalize to [-1, 1].

    Normalize([0.5], [0.5]) computes (x - 0.5) / 0.5, turning ToTensor's [0, 1] into [-1, 1], the range the UNet
    is trained on. `center_crop=True` keeps the aspect ratio (resize the short side, then crop the centre).
    """
    from torchvision import transforms

    require_positive_int("size", size)
    resize = (
        [transforms.Resize(size), transforms.CenterCrop(size)] if center_crop else [transforms.Resize((size, size))]
    )
    flips = [transforms.RandomHorizontalFlip()] if flip else []
    return transforms.Compose([ToRGB(), *resize, *flips, transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])


class BatchTransform:
    """The function given to set_transform: a batch of rows -> {'images': [tensors], 'text': [captions]}."""

    def __init__(self, transform: Callable[[Image.Image], Any]) -> None:
        self.transform = transform

    def __call__(self, examples: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"images": [self.transform(image) for image in examples["image"]]}
        if "text" in examples:
            out["text"] = list(examples["text"])
        return out


def with_transform(dataset: "Dataset", size: int, flip: bool = True, center_crop: bool = False) -> "Dataset":
    """A copy of `dataset` whose rows come out preprocessed, {'images': tensor, 'text': ...}, computed on the fly."""
    if dataset.format.get("type") == "custom":
        raise ValueError(
            "This dataset already has a transform (from with_transform or set_transform): pass the "
            "dataset as loaded, before with_transform, or call dataset.reset_format() first."
        )
    if "image" not in dataset.column_names:
        raise ValueError(
            f"with_transform needs an 'image' column; this dataset has {dataset.column_names}. "
            "Load it with load_image_dataset(), which names the column for you."
        )
    # with_transform = set_transform on a new Dataset object over the same Arrow data: `dataset` itself is unchanged.
    return dataset.with_transform(BatchTransform(preprocess(size, flip, center_crop)))


def make_dataloader(
    dataset,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    collate_fn: Callable | None = None,
) -> "DataLoader":
    """A DataLoader with a seeded shuffle; num_workers=0 by default because worker processes hang in notebooks.
    (The trainer passes its own collate_fn, and accelerate's seedable sampler then sets the order per epoch.)"""
    import torch

    require_positive_int("batch_size", batch_size)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers={num_workers!r}: expected 0 (load in this process) or a positive whole number.")
    if len(dataset) == 0:
        raise ValueError("The dataset is empty: there is nothing to batch.")
    first = dataset[0]
    if isinstance(first, dict) and any(isinstance(v, Image.Image) for v in first.values()):
        raise TypeError(
            "The dataset still yields PIL images, which cannot be stacked into a batch. "
            "Apply the transform first: dataset = with_transform(dataset, size)."
        )
    if num_workers > 0 and _in_notebook():
        warnings.warn(
            f"num_workers={num_workers} in a notebook: worker processes can freeze or fail with "
            '"Can\'t get attribute ... on __main__". If that happens, use num_workers=0.',
            stacklevel=2,
        )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers,
        collate_fn=collate_fn,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where DataLoader worker processes misbehave)."""
    import sys

    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"
