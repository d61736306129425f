"""Plumbing for lesson 08's LoRA fine-tuning: checks that turn peft's and diffusers' deep errors
into ones a learner can act on. The resumable trainer that scripts/train_lora.py runs is in
training/lora.py. The LoRA itself (LoraConfig, add_adapter, the loss, save/load/fuse) is written
out in the notebook; its folder of pictures is read by course_utils.folders.load_image_tensors,
and its pictures measured by course_utils.emoji_quality."""

from __future__ import annotations

from pathlib import Path

import torch

LORA_FILE = "pytorch_lora_weights.safetensors"  # the name save_lora_weights writes and loads by default


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


# Copied in notebooks/08_lora_finetuning.ipynb;
# kept equal by tests/test_lesson08.py::test_the_notebook_trains_only_the_lora
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
