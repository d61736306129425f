"""Where the memory goes in real big pipelines: each component built from its real config (data/model_configs/) on
the meta device, so its parameters can be counted without making or downloading a single weight."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from course_utils.paths import data_root

GB = 10**9  # decimal gigabytes, as model cards quote sizes (course_utils.memory prints GiB, 2**30 bytes)
BF16_BYTES = 2

_SD3 = {
    "transformer": "SD3Transformer2DModel",
    "vae": "AutoencoderKL",
    "text_encoder": "CLIPTextModelWithProjection",  # CLIP ViT-L/14
    "text_encoder_2": "CLIPTextModelWithProjection",  # OpenCLIP ViT-bigG/14
    "text_encoder_3": "T5EncoderModel",  # T5 v1.1 XXL, encoder half
}
_FLUX = {
    "transformer": "FluxTransformer2DModel",
    "vae": "AutoencoderKL",
    "text_encoder": "CLIPTextModel",  # CLIP ViT-L/14
    "text_encoder_2": "T5EncoderModel",  # T5 v1.1 XXL, encoder half
}
# Short name -> the hub repo the configs come from and the class of each torch component (as its model_index.json
# names them). The safety checker of SD 1.5 is left out: the course's pipelines load without it.
MODELS: dict[str, dict[str, Any]] = {
    "sd15": {
        "hub_id": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "components": {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "text_encoder": "CLIPTextModel"},
    },
    "sdxl": {
        "hub_id": "stabilityai/stable-diffusion-xl-base-1.0",
        "components": {
            "unet": "UNet2DConditionModel",
            "vae": "AutoencoderKL",
            "text_encoder": "CLIPTextModel",  # CLIP ViT-L/14
            "text_encoder_2": "CLIPTextModelWithProjection",  # OpenCLIP ViT-bigG/14
        },
    },
    "sd35-medium": {"hub_id": "stabilityai/stable-diffusion-3.5-medium", "components": _SD3},
    "sd35-large": {"hub_id": "stabilityai/stable-diffusion-3.5-large", "components": _SD3},
    "flux-dev": {"hub_id": "black-forest-labs/FLUX.1-dev", "components": _FLUX},
    "flux-schnell": {"hub_id": "black-forest-labs/FLUX.1-schnell", "components": _FLUX},
}
# The transformers config class of each transformers model class above
_CONFIG_CLASS = {
    "CLIPTextModel": "CLIPTextConfig",
    "CLIPTextModelWithProjection": "CLIPTextConfig",
    "T5EncoderModel": "T5Config",
}


def _check_model(model: str) -> dict[str, Any]:
    """MODELS[model], or a KeyError that lists the known names."""
    if model not in MODELS:
        raise KeyError(f"unknown model {model!r}: choose one of {sorted(MODELS)}")
    return MODELS[model]


def load_config(model: str, component: str) -> dict[str, Any]:
    """The stored config.json of one component (e.g. load_config('sdxl', 'unet')), as a dict."""
    path = f"model_configs/{model}/{component}/config.json"
    return json.loads((data_root(path, what=f"config of {model}'s {component}") / path).read_text())


def build_on_meta(model: str, component: str):
    """One component of `model`, built from its stored config on the meta device: right shapes, no memory."""
    import torch

    class_name = _check_model(model)["components"][component]
    config = load_config(model, component)
    with torch.device("meta"):
        if class_name in _CONFIG_CLASS:
            import transformers

            config_class = getattr(transformers, _CONFIG_CLASS[class_name])
            return getattr(transformers, class_name)(config_class(**config))
        import diffusers

        return getattr(diffusers, class_name).from_config(config)


def count_parameters(module, float_buffers: bool = True) -> int:
    """Number of weights of a torch module: its parameters, and (by default) its floating-point buffers."""
    # A tensor shared by two layers counts once. Floating-point buffers are weights too: they go to the GPU and take
    # the pipeline's dtype. The one that matters here is SD3's positional-embedding table (226 M numbers in SD 3.5
    # Medium), which the original checkpoints store as a weight and diffusers rebuilds from sines and cosines.
    # Integer buffers (CLIP's 77 position ids) are left out.
    count = sum(p.numel() for p in module.parameters())
    if float_buffers:
        count += sum(b.numel() for b in module.buffers() if b.is_floating_point())
    return count


@lru_cache(maxsize=None)
def _component_count(model: str, component: str) -> int:
    """count_parameters of one component built on meta, remembered (the configs do not change while running)."""
    return count_parameters(build_on_meta(model, component))


def component_parameters(model: str) -> dict[str, int]:
    """Weights of each torch component of `model` (a short name from MODELS), counted on the meta device."""
    return {name: _component_count(model, name) for name in _check_model(model)["components"]}


def weight_bytes(model: str, dtype_bytes: int = BF16_BYTES) -> dict[str, int]:
    """Bytes the weights of each component take at `dtype_bytes` per parameter (2 for bf16/fp16, 4 for fp32)."""
    return {name: n * dtype_bytes for name, n in component_parameters(model).items()}


def size_table(models: list[str] | None = None) -> list[tuple[str, str, int, float]]:
    """Rows of (model, component, parameters, GB in bf16) for `models` (all of MODELS by default)."""
    rows = []
    for model in models or list(MODELS):
        for component, n in component_parameters(model).items():
            rows.append((model, component, n, n * BF16_BYTES / GB))
    return rows


def format_size_table(rows: list[tuple[str, str, int, float]]) -> str:
    """size_table's rows as aligned text, with a total line for each model."""
    lines = [f"{'model':<13} {'component':<15} {'parameters':>15} {'GB (bf16)':>10}"]
    for model in dict.fromkeys(row[0] for row in rows):
        mine = [row for row in rows if row[0] == model]
        for _, component, n, gb in mine:
            lines.append(f"{model:<13} {component:<15} {n:>15,} {gb:>10.2f}")
        total = sum(row[2] for row in mine)
        lines.append(f"{model:<13} {'= total':<15} {total:>15,} {total * BF16_BYTES / GB:>10.2f}")
    return "\n".join(lines)
