"""course_utils.model_sizes: the real pipelines' components, built from their stored configs on the meta device, have
the parameter counts their authors published, and building them takes no memory and a few seconds.
data/model_configs/SOURCES.md cites each published figure."""

from __future__ import annotations

import json
import time

import pytest

from course_utils import model_sizes as ms
from course_utils.paths import REPO_DATA

REL = 0.02  # published figures are rounded (2.6 B, 4.7 B, 12 B): 2 % covers the rounding
CLIP_L = 123e6  # CompVis/stable-diffusion README: "860M UNet and 123M text encoder"
T5_XXL_ENCODER = 4.7e9  # SD3 paper (arXiv 2403.03206) and the diffusers SD3 docs: "4.7B parameter T5-XXL text encoder"
CLIP_G = 694.66e6  # open_clip docs/model_profile.csv, ViT-bigG-14 text tower
VAE_16CH = 83_819_683  # ostris/vae-kl-f8-d16 model card: "SD3 VAE: 83,819,683" parameters
PUBLISHED = [
    ("sd15", "unet", 860e6),  # CompVis/stable-diffusion README
    ("sd15", "text_encoder", CLIP_L),
    ("sdxl", "unet", 2.6e9),  # SDXL paper (arXiv 2307.01952), Table 1
    ("sdxl", "text_encoder", CLIP_L),
    ("sdxl", "text_encoder_2", CLIP_G),
    ("sd35-medium", "transformer", 2.5e9),  # Stability AI's SD 3.5 announcement: "2.5 billion parameters"
    ("sd35-medium", "text_encoder_2", CLIP_G),
    ("sd35-medium", "text_encoder_3", T5_XXL_ENCODER),
    ("sd35-medium", "vae", VAE_16CH),
    ("sd35-large", "transformer", 8.1e9),  # the same announcement: "8.1 billion parameters"
    ("sd35-large", "text_encoder", CLIP_L),
    ("sd35-large", "text_encoder_3", T5_XXL_ENCODER),
    ("sd35-large", "vae", VAE_16CH),
    ("flux-dev", "transformer", 12e9),  # FLUX.1 model cards: "a 12 billion parameter rectified flow transformer"
    ("flux-dev", "text_encoder_2", T5_XXL_ENCODER),
    ("flux-dev", "vae", VAE_16CH),
    ("flux-schnell", "transformer", 12e9),
    ("flux-schnell", "text_encoder", CLIP_L),
]


@pytest.mark.parametrize(("model", "component", "published"), PUBLISHED, ids=lambda v: str(v))
def test_parameter_counts_match_the_published_figures(model, component, published):
    counted = ms.component_parameters(model)[component]
    assert counted == pytest.approx(published, rel=REL), f"{model} {component}: {counted:,} vs {published:,.0f}"


def test_the_two_sdxl_text_encoders_together_are_the_papers_817m():
    counts = ms.component_parameters("sdxl")
    assert counts["text_encoder"] + counts["text_encoder_2"] == pytest.approx(817e6, rel=REL)  # SDXL paper, Table 1


def test_models_that_share_a_part_count_it_the_same():
    t5 = {ms.component_parameters(m)[c] for m, c in [("sd35-large", "text_encoder_3"), ("flux-dev", "text_encoder_2")]}
    assert len(t5) == 1, "SD 3.5 and Flux use the same T5-XXL encoder"
    assert ms.component_parameters("sd15")["vae"] == ms.component_parameters("sdxl")["vae"] < VAE_16CH
    dev, schnell = ms.component_parameters("flux-dev"), ms.component_parameters("flux-schnell")
    assert 0 < dev["transformer"] - schnell["transformer"] < 20e6, "dev adds only the guidance embedder"


def test_building_on_meta_allocates_no_memory_and_takes_seconds():
    ms.build_on_meta("sd15", "vae")  # the first build imports diffusers' model code: not what is timed
    started = time.perf_counter()
    transformer = ms.build_on_meta("flux-dev", "transformer")  # 11.9 B parameters: 48 GB if it were real, in fp32
    assert time.perf_counter() - started < 10
    tensors = [*transformer.parameters(), *transformer.buffers()]
    assert tensors and {t.device.type for t in tensors} == {"meta"}
    for model, spec in ms.MODELS.items():
        for component in spec["components"]:
            module = ms.build_on_meta(model, component)
            assert {t.device.type for t in [*module.parameters(), *module.buffers()]} == {"meta"}, (model, component)


def test_weight_bytes_and_the_table():
    counts = ms.component_parameters("flux-dev")
    assert ms.weight_bytes("flux-dev", 4) == {name: 4 * n for name, n in counts.items()}
    rows = ms.size_table(["flux-dev"])
    assert [row[:3] for row in rows] == [("flux-dev", name, n) for name, n in counts.items()]
    assert rows[0][3] == pytest.approx(2 * counts["transformer"] / 1e9)  # bf16: 2 bytes a parameter, GB of 10^9
    text = ms.format_size_table(rows)
    assert "flux-dev" in text and f"{counts['transformer']:,}" in text and "= total" in text


def test_stored_configs_match_each_model_index():
    """Every component MODELS names has its config.json, and model_index.json names the same class for it."""
    for model, spec in ms.MODELS.items():
        folder = REPO_DATA / "model_configs" / model
        index = json.loads((folder / "model_index.json").read_text())
        for component, class_name in spec["components"].items():
            assert index[component][1] == class_name, (model, component)
            config = json.loads((folder / component / "config.json").read_text())
            assert "_name_or_path" not in config, (model, component)
        torch_parts = {k for k in index if k in ("unet", "transformer", "vae") or k.startswith("text_encoder")}
        assert torch_parts == set(spec["components"]), model
    assert (REPO_DATA / "model_configs" / "SOURCES.md").is_file()


def test_unknown_model_names_the_known_ones():
    with pytest.raises(KeyError, match="sd15"):
        ms.component_parameters("sd2")
