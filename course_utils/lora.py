"""Plumbing for lesson 08's LoRA fine-tuning: a folder of captioned images as tensors, and checks that
turn peft's and diffusers' deep errors into ones a learner can act on. The resumable trainer that
scripts/train_lora.py runs is in training/lora.py. The LoRA itself (LoraConfig, add_adapter, the loss,
save/load/fuse) is written out in the notebook."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from course_utils.data import check_metadata, to_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
LORA_FILE = "pytorch_lora_weights.safetensors"  # the name save_lora_weights writes and loads by default


# ----------------------------------------------------------------------------------------- the data
def _captions_of(folder: Path, files: list[Path], default: str | None) -> list[str]:
    """Captions from metadata.jsonl (file_name, text), else a .txt per image, else `default`."""
    metadata = folder / "metadata.jsonl"
    if metadata.is_file():
        check_metadata(folder)  # the dataset path's checks: bad lines, rows without file_name, missing files
        rows = [json.loads(line) for line in metadata.read_text().splitlines() if line.strip()]
        by_file = {row["file_name"]: row["text"] for row in rows}
        return [by_file.get(f.name, default or "") for f in files]
    captions = []
    for f in files:
        text_file = f.with_suffix(".txt")
        captions.append(text_file.read_text().strip() if text_file.is_file() else default or "")
    return captions


def load_image_folder(
    folder: str | Path,
    size: int,
    default_caption: str | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """A folder's images, centre-cropped, as a tensor in [-1, 1] (N, 3, size, size); captions."""
    from PIL import Image, ImageOps

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Image folder {folder} does not exist: pass a folder of images "
            f"({', '.join(IMAGE_SUFFIXES)}), with captions in metadata.jsonl or .txt files."
        )
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(
            f"No images in {folder}: expected files ending in {', '.join(IMAGE_SUFFIXES)}. "
            "Put 10-30 pictures of your concept there (subfolders are not read)."
        )
    captions = _captions_of(folder, files, default_caption)
    if not all(captions):
        missing = [f.name for f, c in zip(files, captions) if not c][:5]
        raise ValueError(
            f"No caption for {missing} in {folder}: add a metadata.jsonl line, a .txt file "
            "of the same name, or pass default_caption (e.g. 'a photo of sks dog')."
        )
    pixels = [ImageOps.fit(to_rgb(Image.open(f)), (size, size)) for f in files]  # transparency on white
    images = torch.stack([torch.frombuffer(bytearray(p.tobytes()), dtype=torch.uint8) for p in pixels])
    images = images.view(len(files), size, size, 3).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return images, captions


# --------------------------------------------------------------------------------------- the checks
def lora_target_names(model: torch.nn.Module) -> list[str]:
    """The short names ('to_q', 'to_out.0', ...) of the Linear layers of the model's attentions."""
    from diffusers.models.attention_processor import Attention

    names = set()
    for attention in (m for m in model.modules() if isinstance(m, Attention)):
        for name, module in attention.named_modules():
            if isinstance(module, torch.nn.Linear) and "lora_" not in name:
                names.add(name.replace(".base_layer", ""))
    return sorted(names)


def check_lora_config(model: torch.nn.Module, config) -> None:
    """Raise a clear error for a rank below 1 or a target module the model does not have."""
    if not isinstance(config.r, int) or config.r < 1:
        raise ValueError(
            f"LoraConfig(r={config.r!r}): the rank must be a whole number of at least 1 "
            "(4-16 is usual; the update B @ A has this many independent directions)."
        )
    targets = config.target_modules
    targets = [targets] if isinstance(targets, str) else list(targets or [])
    names = {name for name, _ in model.named_modules()}
    unknown = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unknown:
        raise ValueError(
            f"target_modules {unknown} are not layers of this {type(model).__name__}. "
            f"Its attention layers are named: {lora_target_names(model)}."
        )


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def _module_weights(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """The shape of each Linear/Conv weight, by module name without peft's 'base_layer'."""
    return {
        name.replace(".base_layer", ""): tuple(m.weight.shape)
        for name, m in model.named_modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
    }


def check_lora_file(unet: torch.nn.Module, path: str | Path) -> None:
    """Raise a clear error when a LoRA file was trained for another UNet (other layers, widths)."""
    from safetensors import safe_open

    path = Path(path)
    path = path / LORA_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"No LoRA file at {path}: pass the folder save_lora_weights wrote, or its {LORA_FILE}.")
    shapes, wrong = _module_weights(unet), []
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            down = ".lora.down." in key or ".lora_A." in key  # A: (rank, in); B ("up"): (out, rank)
            if not key.startswith("unet.") or not (down or ".lora.up." in key or ".lora_B." in key):
                continue
            module = key[len("unet.") :].split(".lora.")[0].split(".lora_")[0]
            shape = tuple(f.get_slice(key).get_shape())
            base = shapes.get(module)
            fits = base is not None and (shape[1] == base[1] if down else shape[0] == base[0])
            if not fits:
                wrong.append((module, shape, base))
    if wrong:
        module, shape, base = wrong[0]
        raise ValueError(
            f"{path.name} does not fit this UNet: {len(wrong)} of its LoRA layers do not match, "
            f"e.g. {module} (LoRA {shape}, layer here: {base or 'none of that name'}). It was "
            "trained for another architecture (SD 1.x, SDXL and the course's emoji-sd all "
            "differ): load it into the pipeline it was trained for."
        )


def file_size_kb(path: str | Path) -> float:
    """The size of a file (or of the LoRA file in a folder) in kB."""
    path = Path(path)
    return (path / LORA_FILE if path.is_dir() else path).stat().st_size / 1e3


# ------------------------------------------------------------------------------------- measuring it
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
    from course_utils.emoji_quality import low_res

    return (low_res(images, size) - low_res(targets, size)).pow(2).mean(dim=1).sqrt()


def nearest_in(images: torch.Tensor, references: torch.Tensor, size: int = 16) -> tuple:
    """For each image, the RMS distance to its nearest reference at `size` px, and its index:
    a distance near 0 means a training image came back verbatim."""
    from course_utils.emoji_quality import low_res

    distances = torch.cdist(low_res(images, size), low_res(references, size)) / (3 * size * size) ** 0.5
    best = distances.min(dim=1)
    return best.values, best.indices


def colourfulness(images: torch.Tensor) -> torch.Tensor:
    """Each image's mean difference between its brightest and darkest colour channel (0-1 units):
    0 for shades of grey, near 0.4 for a saturated red apple. Images (N, 3, H, W) in [0, 1]."""
    return (images.max(dim=1).values - images.min(dim=1).values).flatten(1).mean(dim=1)
