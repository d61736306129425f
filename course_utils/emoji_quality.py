"""Measured quality of the course's emoji models, by pixel distance at low resolution: does "red apple" come out
nearer to the red apple emoji than to the 1,869 others; are DDPM samples nearer to real emoji than noise is; how
well does the VAE reconstruct; does a LoRA move the pictures to its targets, copy its training pictures, or take the
colour out. bench/emoji_quality.py and bench/lora_quality.py print the figures; tests check them with looser bars,
and lesson 08 measures its LoRA with them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def low_res(images: torch.Tensor, size: int = 16) -> torch.Tensor:
    """Images (N, 3, H, W) in [0, 1], averaged down to size x size and flattened: (N, 3 * size * size)."""
    return F.interpolate(images.float(), size=(size, size), mode="area").flatten(1)


def retrieval_ranks(
    generated: torch.Tensor, references: torch.Tensor, targets: torch.Tensor, size: int = 16
) -> torch.Tensor:
    """For each generated image, the rank of its intended reference among all references by pixel distance at
    `size` px: 0 means the intended emoji is the nearest one."""
    distances = torch.cdist(low_res(generated, size), low_res(references, size))  # (n_generated, n_references)
    intended = distances.gather(1, targets[:, None])
    return (distances < intended).sum(dim=1)


@dataclass
class Retrieval:
    """Top-1 / top-10 rates and the median rank of retrieval_ranks, with what chance would give."""

    top1: float
    top10: float
    median_rank: float
    count: int
    references: int

    def __str__(self) -> str:
        chance1, chance10 = 1 / self.references, 10 / self.references
        return (
            f"top-1 {self.top1:.0%}, top-10 {self.top10:.0%}, median rank {self.median_rank:.0f} of "
            f"{self.references} ({self.count} prompts; chance: top-1 {chance1:.2%}, top-10 {chance10:.1%}, "
            f"median rank {self.references / 2:.0f})"
        )


def summarize(ranks: torch.Tensor, references: int) -> Retrieval:
    """Top-1 and top-10 rates and the median rank (1-based) of 0-based ranks."""
    ranks = ranks.float()
    return Retrieval(
        float((ranks < 1).float().mean()),
        float((ranks < 10).float().mean()),
        float(ranks.median() + 1),
        len(ranks),
        references,
    )


def nearest_distance(samples: torch.Tensor, references: torch.Tensor, size: int = 16) -> torch.Tensor:
    """Each sample's RMS pixel distance (in [0, 1] units) to its nearest reference at `size` px."""
    distances = torch.cdist(low_res(samples, size), low_res(references, size))
    return distances.min(dim=1).values / (3 * size * size) ** 0.5


def pick_captions(count: int, total: int, seed: int = 0) -> torch.Tensor:
    """`count` distinct indices out of `total`, the same for a given seed: which emoji a benchmark asks for."""
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count]


@torch.no_grad()
def text_to_image_retrieval(
    pipe,
    images: torch.Tensor,
    captions: list[str],
    indices: torch.Tensor,
    steps: int = 20,
    guidance_scale: float = 5.0,
    seed: int = 0,
    batch: int = 10,
) -> Retrieval:
    """Generate each chosen caption once (seed + its position) and rank the intended emoji among all of `images`
    (N, 3, 64, 64) in [-1, 1]."""
    generated = []
    for start in range(0, len(indices), batch):
        chunk = indices[start : start + batch].tolist()
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(chunk))]
        out = pipe(
            [captions[i] for i in chunk],
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=generators,
            height=images.shape[-2],
            width=images.shape[-1],
            output_type="pt",
        ).images
        generated.append(out.cpu())
    ranks = retrieval_ranks(torch.cat(generated), (images + 1) / 2, indices)
    return summarize(ranks, len(images))


# ------------------------------------------------------------------------------- lesson 08's LoRA, measured
@torch.no_grad()
def generate(
    pipe, prompts: list[str], seed: int = 0, steps: int = 20, guidance_scale: float = 4.0, **kwargs
) -> torch.Tensor:
    """One image per prompt, prompt i from seed + i, as a tensor in [0, 1] (N, 3, H, W)."""
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    return (
        pipe(
            prompts,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=generators,
            output_type="pt",
            **kwargs,
        )
        .images.cpu()
        .float()
    )


def distance_to_targets(images: torch.Tensor, targets: torch.Tensor, size: int = 16) -> torch.Tensor:
    """Each image's RMS pixel distance (0-1 units) to its own target at `size` px, as the emoji
    benchmark measures: images and targets (N, 3, H, W) in [0, 1]."""
    return (low_res(images, size) - low_res(targets, size)).pow(2).mean(dim=1).sqrt()


def nearest_in(images: torch.Tensor, references: torch.Tensor, size: int = 16) -> tuple:
    """For each image, the RMS distance to its nearest reference at `size` px, and its index:
    a distance near 0 means a training image came back verbatim."""
    distances = torch.cdist(low_res(images, size), low_res(references, size)) / (3 * size * size) ** 0.5
    best = distances.min(dim=1)
    return best.values, best.indices


def colourfulness(images: torch.Tensor) -> torch.Tensor:
    """Each image's mean difference between its brightest and darkest colour channel (0-1 units):
    0 for shades of grey, near 0.4 for a saturated red apple. Images (N, 3, H, W) in [0, 1]."""
    return (images.max(dim=1).values - images.min(dim=1).values).flatten(1).mean(dim=1)
