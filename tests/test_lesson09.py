"""Lesson 09: the notebook's flow-matching loss is the training script's (and the script's fast layout computes the
same loss), its SD3 guidance loop gives StableDiffusion3Pipeline's latents, its Flux packing and loops give
FluxPipeline's, the taught calls are written out, and each exercise check accepts right answers and rejects the
usual wrong ones with the right hint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3
from diffusers.utils.torch_utils import randn_tensor
from notebook_code import missing_calls, notebook_definitions, notebook_path
from test_flow_matching import tiny_transformer

from course_utils import flow_matching as fm
from course_utils.exercises.lesson09_flow_matching import check_ddpm_sigma, check_euler_step, check_shift
from course_utils.flux_tiny import tiny_flux_pipeline

NOTEBOOK = notebook_path("09_flow_matching_and_transformers.ipynb")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread for these tiny models


def _notebook_loss():
    names = dict(
        torch=torch,
        compute_density_for_timestep_sampling=compute_density_for_timestep_sampling,
        compute_loss_weighting_for_sd3=compute_loss_weighting_for_sd3,
    )
    return notebook_definitions(NOTEBOOK, "def flow_matching_loss(", {"flow_matching_loss"}, **names)[
        "flow_matching_loss"
    ]


def _batch(batch: int = 4):
    g = torch.Generator().manual_seed(3)
    return torch.randn(batch, 4, 8, 8, generator=g), torch.randn(batch, 77, 32, generator=g), torch.randn(batch, 16)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_notebook_loss_is_the_scripts(shift):
    latents, clip, pooled = _batch()
    model, scheduler = tiny_transformer(), FlowMatchEulerDiscreteScheduler(shift=shift)
    embeds = fm.without_t5(clip)
    with torch.no_grad():
        ours = _notebook_loss()(model, scheduler, latents, embeds, pooled, torch.Generator().manual_seed(5))
        theirs = fm.flow_matching_loss(model, scheduler, latents, embeds, pooled, torch.Generator().manual_seed(5))
    assert ours > 0.1
    assert torch.equal(ours, theirs)


def test_the_scripts_fast_layout_gives_the_notebooks_loss_on_the_same_batch():
    """The script trains on 77 + 1 text rows with RepeatedLastRowAttnProcessor; the notebook (and the pipeline)
    use 77 + 256. Same batch, same draws: the same loss within float rounding."""
    latents, clip, pooled = _batch()
    model, scheduler = tiny_transformer(), FlowMatchEulerDiscreteScheduler(shift=1.0)
    with torch.no_grad():
        full = _notebook_loss()(
            model, scheduler, latents, fm.without_t5(clip), pooled, torch.Generator().manual_seed(7)
        )
        model.set_attn_processor(fm.RepeatedLastRowAttnProcessor())
        fast = fm.flow_matching_loss(
            model, scheduler, latents, fm.without_t5(clip, rows=1), pooled, torch.Generator().manual_seed(7)
        )
    assert abs(full.item() - fast.item()) < 1e-5 * full.item()


@pytest.fixture(scope="module")
def emoji_sd3():
    from diffusers import StableDiffusion3Pipeline

    from course_utils.models.emoji import shipped_model

    pipe = StableDiffusion3Pipeline.from_pretrained(shipped_model("emoji-sd3"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_notebook_sd3_loop_is_the_pipeline(emoji_sd3):
    ns = notebook_definitions(
        NOTEBOOK, "def sd3_generate(", {"sd3_generate"}, torch=torch, randn_tensor=randn_tensor, pipe=emoji_sd3, size=64
    )
    ours = ns["sd3_generate"]("rocket", 3, 5.0, torch.Generator().manual_seed(1))
    theirs = emoji_sd3(
        "rocket",
        num_inference_steps=3,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(1),
        output_type="latent",
    ).images
    other_seed = ns["sd3_generate"]("rocket", 3, 5.0, torch.Generator().manual_seed(2))
    assert (other_seed - theirs).abs().max() > 0.1  # the comparison can fail
    assert (ours - theirs).abs().max() <= 1e-5


def _flux_namespace() -> dict:
    ns = dict(torch=torch, np=np, FluxPipeline=FluxPipeline, calculate_shift=calculate_shift)
    ns = notebook_definitions(NOTEBOOK, "def pack(", {"pack", "unpack"}, **ns)
    ns = notebook_definitions(NOTEBOOK, "def flux_noise(", {"flux_noise", "flux_decode"}, **ns)
    return notebook_definitions(NOTEBOOK, "def flux_by_hand(", {"flux_by_hand"}, **ns)


@pytest.mark.parametrize(
    "guidance_embeds, extra",
    [
        (False, {}),
        (True, {"guidance_scale": 3.5}),
        (False, {"true_cfg_scale": 2.0, "negative_prompt": "a blurry photo"}),
    ],
)
def test_notebook_flux_loop_is_the_pipeline(guidance_embeds, extra):
    pipe = tiny_flux_pipeline(guidance_embeds=guidance_embeds)
    ns = _flux_namespace()
    settings = dict(prompt="a cat", height=16, width=16, num_inference_steps=3, max_sequence_length=32, **extra)
    ours = ns["flux_by_hand"](pipe, generator=torch.Generator().manual_seed(0), **settings)
    theirs = pipe(generator=torch.Generator().manual_seed(0), output_type="latent", **settings).images
    assert torch.equal(ours, theirs)
    image = ns["flux_decode"](pipe, ours, 16, 16)
    pixels = pipe(generator=torch.Generator().manual_seed(0), output_type="pt", **settings).images
    assert torch.equal(image, pixels)


def test_notebook_pack_is_the_pipelines():
    ns = _flux_namespace()
    latents = torch.randn(2, 16, 8, 6)
    tokens = ns["pack"](latents)
    assert torch.equal(tokens, FluxPipeline._pack_latents(latents, 2, 16, 8, 6))
    assert torch.equal(ns["unpack"](tokens, 8, 6), latents)


def test_the_taught_calls_are_written_out_in_the_notebook():
    calls = [
        "StableDiffusion3Pipeline.from_pretrained(",
        "text_encoder_3=None, tokenizer_3=None",
        "scheduler.scale_noise(",
        "scheduler.step(",
        "scheduler.set_timesteps(",
        "pipe.encode_prompt(",
        "calculate_shift(",
        "compute_density_for_timestep_sampling(",
        "compute_loss_weighting_for_sd3(",
        "randn_tensor(",
        "FluxPipeline._pack_latents(",
        "FluxPipeline._unpack_latents(",
        "FluxPipeline._prepare_latent_image_ids(",
        "set_timesteps(sigmas=sigmas, mu=mu)",
        "true_cfg_scale",
        "max_sequence_length",
        "trace_joint_attention(pipe)",
    ]
    assert not missing_calls(NOTEBOOK, calls)


# ------------------------------------------------------------------------------------------------- exercises
def _verdict(capsys) -> str:
    return capsys.readouterr().out


def test_check_shift(capsys):
    assert check_shift(lambda s, shift: shift * s / (1 + (shift - 1) * s))
    assert "✅" in _verdict(capsys)
    assert not check_shift(lambda s, shift: s)
    assert "unchanged" in _verdict(capsys)
    assert not check_shift(lambda s, shift: shift * s / (1 + shift * s))
    assert "(shift - 1)" in _verdict(capsys)
    assert not check_shift(lambda s, shift: 1 / 0)
    assert "ZeroDivisionError" in _verdict(capsys)
    assert not check_shift(None)
    assert "Not attempted" in _verdict(capsys)


def test_check_euler_step(capsys):
    assert check_euler_step(lambda x, v, s, s_next: x + (s_next - s) * v)
    assert "✅" in _verdict(capsys)
    assert not check_euler_step(lambda x, v, s, s_next: x + (s - s_next) * v)
    assert "sign" in _verdict(capsys)
    assert not check_euler_step(lambda x, v, s, s_next: x - s * v)
    assert "σ = 0" in _verdict(capsys)


def test_check_ddpm_sigma(capsys):
    assert check_ddpm_sigma(lambda a: (1 - a).sqrt() / (a.sqrt() + (1 - a).sqrt()))
    assert "t = 0 is σ = " in _verdict(capsys)
    assert not check_ddpm_sigma(lambda a: (1 - a).sqrt())
    assert "divide" in _verdict(capsys)
    assert not check_ddpm_sigma(lambda a: a.sqrt() / (a.sqrt() + (1 - a).sqrt()))
    assert "1 - σ" in _verdict(capsys)
    assert not check_ddpm_sigma(lambda a: "text")
    assert "❌" in _verdict(capsys)
