"""Stand-ins load with plain diffusers/transformers from_pretrained and keep the real shape contracts."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDPMPipeline,
    DDPMScheduler,
    PNDMScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UNet2DModel,
)
from transformers import CLIPTextModel, CLIPTokenizer

from course_utils.models import architectures as arch
from course_utils.models.registry import MODELS
from course_utils.models.standins import clip_tokenizer, get_standin


@pytest.fixture(scope="module")
def sd(standin_root):
    return get_standin(standin_root, MODELS["sd15"], "tiny")


def test_sd_components_load_with_plain_from_pretrained(sd):
    assert json.loads((sd / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    unet = UNet2DConditionModel.from_pretrained(sd, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(sd, subfolder="vae")
    text_encoder = CLIPTextModel.from_pretrained(sd, subfolder="text_encoder")
    tokenizer = CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer")
    scheduler = PNDMScheduler.from_pretrained(sd, subfolder="scheduler")
    # the contracts that lesson code written for the real checkpoint relies on
    assert text_encoder.config.hidden_size == unet.config.cross_attention_dim
    assert tokenizer.model_max_length == 77 and text_encoder.config.max_position_embeddings == 77
    assert vae.config.latent_channels == unet.config.in_channels == 4
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 8
    assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.steps_offset == 1
    image = torch.zeros(1, 3, 64, 48)
    latents = vae.encode(image).latent_dist.mean
    assert latents.shape == (1, 4, 8, 6)
    assert any(name.endswith("attn2") for name, _ in unet.named_modules())


def test_scheduler_config_has_only_the_real_repos_keys(sd, standin_root):
    from diffusers import DDIMScheduler, UniPCMultistepScheduler

    config = json.loads((sd / "scheduler" / "scheduler_config.json").read_text())
    assert config["_class_name"] == "PNDMScheduler" and "timestep_spacing" not in config
    # so a swapped-in scheduler takes its own default spacing, as it does with the real checkpoint
    unipc = UniPCMultistepScheduler.from_pretrained(sd, subfolder="scheduler")
    assert unipc.config.timestep_spacing == "linspace"
    unipc.set_timesteps(3)
    assert int(unipc.timesteps[0]) == 999
    dreamlike = get_standin(standin_root, MODELS["dreamlike-photoreal"], "tiny")
    assert isinstance(DDIMScheduler.from_pretrained(dreamlike, subfolder="scheduler"), DDIMScheduler)
    assert json.loads((dreamlike / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "DDIMScheduler"


def test_sd_pipeline_runs_on_the_standin(sd):
    pipe = StableDiffusionPipeline.from_pretrained(sd, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a photo of a cat", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (1, 64, 64, 3)


def test_standin_is_deterministic_and_cached(standin_root, sd):
    again = get_standin(standin_root, MODELS["sd15"], "tiny")
    assert again == sd
    a = UNet2DConditionModel.from_pretrained(sd, subfolder="unet")
    state = torch.get_rng_state()
    other = get_standin(standin_root / "second", MODELS["sd15"], "tiny")
    assert torch.equal(state, torch.get_rng_state()), "building a stand-in must not move the caller's RNG"
    b = UNet2DConditionModel.from_pretrained(other, subfolder="unet")
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


def test_ddpm_standin_has_the_flat_hub_layout(standin_root):
    folder = get_standin(standin_root, MODELS["ddpm-cat"], "tiny")
    assert (folder / "config.json").exists() and (folder / "scheduler_config.json").exists()
    unet = UNet2DModel.from_pretrained(folder)
    scheduler = DDPMScheduler.from_pretrained(folder)
    assert scheduler.config.num_train_timesteps == 1000 and scheduler.config.beta_schedule == "linear"
    pipe = DDPMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert image.shape == (1, unet.config.sample_size, unet.config.sample_size, 3)


def test_inpainting_standin_has_nine_input_channels(standin_root):
    folder = get_standin(standin_root, MODELS["sd15-inpaint"], "tiny")
    pipe = StableDiffusionInpaintPipeline.from_pretrained(folder, safety_checker=None)
    assert pipe.unet.config.in_channels == 9


@pytest.mark.parametrize(
    "model_class, config, millions",
    [
        (UNet2DConditionModel, arch.SD_UNET["full"], 859.5),  # SD 1.x UNet
        (AutoencoderKL, arch.SD_VAE["full"], 83.7),  # SD 1.x VAE
        (UNet2DModel, arch.DDPM_UNET["full"], 113.7),  # google/ddpm-cat-256
    ],
)
def test_full_size_configs_have_the_real_parameter_counts(model_class, config, millions):
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = model_class(**config)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.1)


def test_full_size_text_encoder_is_clip_vit_l14_text():
    from accelerate import init_empty_weights
    from transformers import CLIPTextConfig

    with init_empty_weights():
        model = CLIPTextModel(CLIPTextConfig(**arch.CLIP_TEXT_COMMON, **arch.SD_TEXT_ENCODER["full"]))
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(123.06, abs=0.05)


def test_tokenizer_matches_clip_on_known_text():
    tok = clip_tokenizer()
    assert tok("a photo of").input_ids == [49406, 320, 1125, 539, 49407]
    assert len(tok) == 49408
    padded = tok("a photo of a cat", padding="max_length", max_length=tok.model_max_length, truncation=True)
    assert len(padded.input_ids) == 77 and padded.input_ids[-1] == 49407


def test_tokenizer_matches_open_clip_reference():
    open_clip = pytest.importorskip("open_clip")
    reference = open_clip.get_tokenizer("ViT-L-14")
    tok = clip_tokenizer()
    for text in ["a photo of a cat", "An astronaut riding a horse on Mars, 4k!", "Genshin Impact café — 原神"]:
        ids = tok(text).input_ids
        ref = [int(i) for i in reference([text])[0] if int(i) != 0]
        assert ids == ref, text
