"""The course's own trained models, shipped in data/models/: `emoji-ddpm` (a pixel-space DDPM in the layout of
google/ddpm-cat-256), `emoji-sd` (a text-to-image latent diffusion model in the Stable Diffusion layout) and
`emoji-sd3` (a flow-matching MMDiT in the Stable Diffusion 3 layout), all trained on the shipped emoji. In smoke
mode they stand in for the real repos, so every lesson shows real pictures on a CPU.
This module finds them; scripts/export_emoji_models.py writes them."""

from __future__ import annotations

from pathlib import Path

from course_utils.models.registry import ModelSpec
from course_utils.paths import data_root

# Which course model stands in for each kind of registry model. The inpainting repo's 9-channel UNet has no emoji
# twin: StableDiffusionInpaintPipeline also inpaints with a plain 4-channel UNet, by blending the known region back in.
# The diffusion transformers (SD3, Flux) have one small twin, emoji-sd3, in the StableDiffusion3Pipeline layout.
FOR_KIND = {"ddpm": "emoji-ddpm", "sd": "emoji-sd", "sd-inpaint": "emoji-sd", "sd3": "emoji-sd3", "flux": "emoji-sd3"}
REQUIRED = {
    "emoji-ddpm": ("model_index.json", "config.json", "scheduler_config.json", "diffusion_pytorch_model.safetensors"),
    "emoji-sd": (
        "model_index.json",
        "scheduler/scheduler_config.json",
        "tokenizer/vocab.json",
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ),
    "emoji-sd3": (
        "model_index.json",
        "scheduler/scheduler_config.json",
        "tokenizer/vocab.json",
        "tokenizer_2/vocab.json",
        "text_encoder/model.safetensors",
        "text_encoder_2/model.safetensors",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ),
}


def models_dir() -> Path:
    """data/models of this repository, or $COURSE_DATA_DIR/models when that is set."""
    return data_root() / "models"


def emoji_model_folder(spec: ModelSpec) -> Path | None:
    """The shipped course model that stands in for `spec` in smoke mode, or None if it is missing or incomplete."""
    name = FOR_KIND.get(spec.kind)
    if name is None:
        return None
    folder = models_dir() / name
    return folder if all((folder / f).exists() for f in REQUIRED[name]) else None


def shipped_model(name: str) -> Path:
    """The folder of a course model shipped in data/models ('emoji-sd', 'emoji-ddpm'), or an error that says where
    the course looked and how to make the model again."""
    required = REQUIRED.get(name, ("",))[0]
    rebuild = "make models" if name in REQUIRED else ""
    return data_root(f"models/{name}/{required}", what=f"{name} model", rebuild=rebuild) / "models" / name
