"""What the course ships works with the plain calls a learner copies from the diffusers docs: no dtype, no device,
the folder's own scheduler at the pipeline's defaults, on a CPU."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from course_utils import emoji_quality as q
from course_utils.folders import load_emoji_tensors
from course_utils.models.emoji import models_dir

PIPELINE_FOLDERS = sorted(p.parent.name for p in models_dir().glob("*/model_index.json"))
LORA_FOLDERS = sorted(p.parent.name for p in models_dir().glob("*/pytorch_lora_weights.safetensors"))


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread for these tiny models


def test_every_shipped_folder_is_covered():
    shipped = sorted(p.name for p in models_dir().iterdir() if p.is_dir())
    assert shipped == sorted(PIPELINE_FOLDERS + LORA_FOLDERS), (
        "a folder in data/models is neither a pipeline nor a LoRA"
    )
    assert PIPELINE_FOLDERS and LORA_FOLDERS


@pytest.mark.parametrize("name", PIPELINE_FOLDERS)
def test_diffusion_pipeline_plain_call_samples(name):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(models_dir() / name)
    for part, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            assert module.dtype == torch.float32, f"{name}/{part} loads as {module.dtype}, not fp32"
    pipe.set_progress_bar_config(disable=True)
    prompt = ["red apple"] if "text_encoder" in pipe.components else []
    images = pipe(*prompt, num_inference_steps=3, output_type="np").images
    assert images.shape[0] == 1 and images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("loader", ["StableDiffusionPipeline", "AutoPipelineForText2Image"])
def test_named_pipeline_classes_plain_call(loader):
    import diffusers

    pipe = getattr(diffusers, loader).from_pretrained(models_dir() / "emoji-sd")
    pipe.set_progress_bar_config(disable=True)
    assert pipe("rocket", num_inference_steps=2, output_type="np").images.shape == (1, 64, 64, 3)


def test_component_by_component_as_in_the_docs():
    """The docs' 'deconstruct the pipeline' code: each part from its subfolder, then one guided UNet call."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UniPCMultistepScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = models_dir() / "emoji-sd"
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    scheduler = UniPCMultistepScheduler.from_pretrained(folder, subfolder="scheduler")
    tokens = tokenizer(["red apple", ""], padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        embeddings = text_encoder(tokens.input_ids)[0]
        scheduler.set_timesteps(2)
        latents = torch.randn(2, unet.config.in_channels, 8, 8) * scheduler.init_noise_sigma
        noise = unet(latents, scheduler.timesteps[0], encoder_hidden_states=embeddings).sample
        image = vae.decode(latents[:1] / vae.config.scaling_factor).sample
    assert noise.shape == latents.shape and torch.isfinite(noise).all()
    assert image.shape == (1, 3, 64, 64)


def test_the_folder_names_the_scheduler_it_samples_well_with():
    index = json.loads((models_dir() / "emoji-sd" / "model_index.json").read_text())
    config = json.loads((models_dir() / "emoji-sd" / "scheduler" / "scheduler_config.json").read_text())
    assert index["scheduler"] == ["diffusers", config["_class_name"]]


@pytest.mark.parametrize("name", LORA_FOLDERS)
def test_shipped_lora_loads_into_the_plain_pipeline(name):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(models_dir() / "emoji-sd")
    pipe.load_lora_weights(models_dir() / name)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("red apple in inverted style", num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 64, 64, 3) and pipe.get_active_adapters()


@pytest.mark.slow
def test_plain_call_at_the_pipeline_defaults_finds_the_intended_emoji():
    """The folder's own scheduler at 25 steps and the default guidance (7.5): with PNDM, SD 1.5's scheduler, this
    model reaches only about 45% top-10 there (bench/emoji_quality.py)."""
    from diffusers import DiffusionPipeline

    images, captions = load_emoji_tensors()
    pipe = DiffusionPipeline.from_pretrained(models_dir() / "emoji-sd")
    pipe.set_progress_bar_config(disable=True)
    default_guidance = inspect.signature(pipe.__call__).parameters["guidance_scale"].default
    assert default_guidance == 7.5, "the pipeline's default guidance changed: measure again at the new default"
    result = q.text_to_image_retrieval(
        pipe, images, captions, q.pick_captions(20, len(captions), seed=2), steps=25, guidance_scale=default_guidance
    )
    assert result.top10 >= 0.8, f"emoji-sd with its own scheduler, 25 steps, guidance 7.5: {result}"
