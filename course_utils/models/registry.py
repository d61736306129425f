"""The one list of hub ids the course uses, with what to download for each. Current ids only: runwayml's
SD 1.5 repo and Stability's SD 2.x repos were deleted, and old tutorials that name them fail with a 401/OSError."""

from __future__ import annotations

from dataclasses import dataclass

from course_utils.checks.values import did_you_mean

_SD_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/*",
    "feature_extractor/preprocessor_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)
_SD_REQUIRED = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/vocab.json",
    "text_encoder/model.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
)


# Diffusion-transformer repos: every component folder's configs, tokenizer files (T5's tokenizer.json, not its
# spiece.model) and safetensors (sharded or not), but not the single-file checkpoint some of them also keep at the
# top level (a second copy of the same weights).
_DIT_FILES = ("model_index.json", "*/*.json", "*/*.txt", "*/*.safetensors")


@dataclass(frozen=True)
class ModelSpec:
    """A hub repo the course loads: its id, what kind of stand-in replaces it offline, and which files to fetch."""

    name: str
    repo_id: str
    kind: str  # "ddpm", "sd", "sd-inpaint", "sd3" or "flux": which stand-in or course model matches its architecture
    about: str
    allow_patterns: tuple[str, ...]
    required: tuple[str, ...]
    scheduler: str = "PNDMScheduler"  # the class in the repo's scheduler config (what a stand-in writes)


def _sd(name: str, repo_id: str, about: str, kind: str = "sd", scheduler: str = "PNDMScheduler") -> ModelSpec:
    return ModelSpec(name, repo_id, kind, about, _SD_FILES, _SD_REQUIRED, scheduler)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "ddpm-cat",
            "google/ddpm-cat-256",
            "ddpm",
            "DDPM trained on 256 px cat photos (UNet2DModel + DDPMScheduler, pixel space)",
            ("model_index.json", "config.json", "scheduler_config.json", "diffusion_pytorch_model.safetensors"),
            ("config.json", "scheduler_config.json", "diffusion_pytorch_model.safetensors"),
        ),
        _sd(
            "sd15",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "Stable Diffusion v1.5, 512 px (the community copy of runwayml's deleted repo)",
        ),
        _sd("sd14", "CompVis/stable-diffusion-v1-4", "Stable Diffusion v1.4, 512 px"),
        _sd(
            "sd15-inpaint",
            "stable-diffusion-v1-5/stable-diffusion-inpainting",
            "SD 1.5 inpainting: a UNet with 9 input channels",
            "sd-inpaint",
            "DDIMScheduler",
        ),
        _sd(
            "dreamlike-photoreal",
            "dreamlike-art/dreamlike-photoreal-2.0",
            "Dreamlike Photoreal 2.0, an SD 1.5 fine-tune for photographic images",
            scheduler="DDIMScheduler",
        ),
        ModelSpec(
            "sd35-medium",
            "stabilityai/stable-diffusion-3.5-medium",
            "sd3",
            "Stable Diffusion 3.5 Medium: an MMDiT with flow matching, two CLIP encoders and T5 (gated: accept the "
            "licence on its hub page, then log in)",
            _DIT_FILES,
            ("model_index.json", "transformer/config.json", "vae/config.json", "scheduler/scheduler_config.json"),
            "FlowMatchEulerDiscreteScheduler",
        ),
        ModelSpec(
            "flux-schnell",
            "black-forest-labs/FLUX.1-schnell",
            "flux",
            "FLUX.1 [schnell]: a 12 B flow-matching transformer distilled for 1-4 steps, CLIP + T5 (Apache 2.0)",
            _DIT_FILES,
            ("model_index.json", "transformer/config.json", "vae/config.json", "scheduler/scheduler_config.json"),
            "FlowMatchEulerDiscreteScheduler",
        ),
    )
}

DATASETS: dict[str, str] = {
    "flowers": "huggan/flowers-102-categories",
    "butterflies": "huggan/smithsonian_butterflies_subset",
}


# Owners whose repos were deleted from the hub, and the owner that keeps copies under the same
# names.
MOVED_OWNERS: dict[str, str] = {"runwayml": "stable-diffusion-v1-5"}


def moved_to(repo_id: str) -> str | None:
    """The current id of a deleted repo the course knows a copy of, else None."""
    owner, _, name = repo_id.partition("/")
    new = f"{MOVED_OWNERS[owner]}/{name}" if owner in MOVED_OWNERS else None
    return new if any(s.repo_id == new for s in MODELS.values()) else None


class UnknownModelError(KeyError):
    """A model name the registry does not know; prints its message as written (KeyError would quote
    it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _suggest(name: str) -> str:
    """' Did you mean ...?' for a near miss, ignoring case ('SD15' -> 'sd15')."""
    options = list(MODELS) + [s.repo_id for s in MODELS.values()]
    return did_you_mean(name, options) or did_you_mean(name.lower(), options)


def model_spec(name: str) -> ModelSpec:
    """Look a model up by short name or by hub id; unknown names raise a KeyError that lists the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"name={name!r}: expected a short name such as 'sd15' or a hub id (a string).")
    if name in MODELS:
        return MODELS[name]
    for spec in MODELS.values():
        if spec.repo_id == name:
            return spec
    new = moved_to(name)
    if new is not None:
        short = next(s.name for s in MODELS.values() if s.repo_id == new)
        raise UnknownModelError(
            f"{name!r} was deleted from the hub; the same weights moved to {new!r}. "
            f"Use course.model({short!r}) or from_pretrained({new!r})."
        )
    known = "\n".join(f"  {s.name:<20} {s.repo_id}" for s in MODELS.values())
    raise UnknownModelError(
        f"Unknown model {name!r}.{_suggest(name)}\n"
        f"Known models (short name, hub id):\n{known}\n"
        "For any other repo, call diffusers' from_pretrained(repo_id) directly."
    )


def dataset_id(name: str) -> str:
    """Hub id of a course dataset given its short name; other strings pass through (a hub id or a local path)."""
    return DATASETS.get(name, name)
