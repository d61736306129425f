"""emoji-sd3's training pieces (course_utils.flow_matching) against diffusers: the text layout equals what
StableDiffusion3Pipeline builds, the fast attention processor computes the same function and gradients as the 256
zero rows, and the measured VAE factors normalise the latents."""

from __future__ import annotations

import pytest
import torch

from course_utils import flow_matching as fm
from course_utils import text_to_image as t2i
from course_utils.models.standins import clip_tokenizer


def tiny_transformer(seed: int = 0):
    """A small SD3Transformer2DModel with weights moved off their initial values (zero-initialised output layers
    would make every comparison trivially equal)."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    model = SD3Transformer2DModel(
        sample_size=8,
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=32,
        caption_projection_dim=32,
        pooled_projection_dim=16,
        pos_embed_max_size=8,
        qk_norm="rms_norm",
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _inputs(batch: int = 3):
    g = torch.Generator().manual_seed(1)
    return dict(
        hidden_states=torch.randn(batch, 4, 8, 8, generator=g),
        clip=torch.randn(batch, 77, 32, generator=g),
        pooled_projections=torch.randn(batch, 16, generator=g),
        timestep=torch.tensor([900.0, 500.0, 20.0][:batch]),
    )


def _run(model, inputs, rows: int):
    clip = inputs["clip"]
    return model(
        hidden_states=inputs["hidden_states"],
        encoder_hidden_states=fm.without_t5(clip, rows=rows),
        pooled_projections=inputs["pooled_projections"],
        timestep=inputs["timestep"],
    ).sample


def test_one_weighted_row_computes_what_256_zero_rows_compute(one_thread):
    model, inputs = tiny_transformer(), _inputs()
    full = _run(model, inputs, fm.T5_ROWS)
    full.square().sum().backward()
    full_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_attn_processor(fm.RepeatedLastRowAttnProcessor())
    fast = _run(model, inputs, 1)
    fast.square().sum().backward()
    assert full.abs().max() > 0.1
    assert (fast - full).abs().max() < 1e-5
    for name, p in model.named_parameters():
        expected = full_grads[name]  # sums over 256 rows against one weighted row: equal up to rounding
        assert (p.grad - expected).norm() <= 1e-5 * expected.norm() + 1e-7, name


def test_one_row_without_its_weight_is_another_function(one_thread):
    """The check above can fail: one zero row with the default processor is not the pipeline's 256."""
    model, inputs = tiny_transformer(), _inputs()
    with torch.no_grad():
        assert (_run(model, inputs, 1) - _run(model, inputs, fm.T5_ROWS)).abs().max() > 1e-3


def test_clip_rows_and_pooled_are_what_the_sd3_pipeline_builds(emoji_sd_folder, one_thread):
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    from transformers import CLIPTextModel

    encoder = fm.with_projection(CLIPTextModel.from_pretrained(emoji_sd_folder, subfolder="text_encoder"))
    pipe = StableDiffusion3Pipeline(
        transformer=tiny_transformer(),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=None,
        text_encoder=encoder,
        tokenizer=clip_tokenizer(),
        text_encoder_2=encoder,
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=None,
        tokenizer_3=None,
    )
    pipe.transformer.register_to_config(joint_attention_dim=128)  # what the pipeline reads for the zero rows' width
    prompts = ["red apple", "rocket"]
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(prompts, None, None)
    rows, ours_pooled = fm.clip_embeds([encoder, encoder], t2i.tokenize(clip_tokenizer(), prompts))
    empty_rows, empty_pooled = fm.clip_embeds([encoder, encoder], t2i.tokenize(clip_tokenizer(), [""]))
    assert embeds.shape == (2, 77 + fm.T5_ROWS, 128)
    assert torch.equal(embeds, fm.without_t5(rows))
    assert torch.equal(pooled, ours_pooled)
    assert torch.equal(negative, fm.without_t5(empty_rows).expand_as(negative))
    assert torch.equal(negative_pooled, empty_pooled.expand_as(negative_pooled))


def test_the_projection_model_pools_as_emoji_sds_encoder(emoji_sd_folder):
    from transformers import CLIPTextModel

    plain = CLIPTextModel.from_pretrained(emoji_sd_folder, subfolder="text_encoder")
    ids = t2i.tokenize(clip_tokenizer(), ["thumbs up"])
    with torch.no_grad():
        assert torch.equal(fm.with_projection(plain)(ids).text_embeds, plain(ids).pooler_output)


def test_latent_factors_normalise_the_latents():
    g = torch.Generator().manual_seed(5)  # not latent_factors' own seed, whose draws would match these
    means, stds = 3.0 + 2.0 * torch.randn(500, 4, 8, 8, generator=g), torch.full((500, 4, 8, 8), 0.5)
    scale, shift = fm.latent_factors(means, stds)
    assert shift == pytest.approx(3.0, abs=0.05)
    sampled = means + stds * torch.randn(means.shape, generator=g)
    assert ((sampled - shift) * scale).std() == pytest.approx(1.0, abs=0.02)


def test_the_loss_is_zero_for_a_model_that_predicts_the_velocity(monkeypatch):
    """flow_matching_loss mixes (1 - sigma) * x + sigma * noise and targets noise - x: a model that knows the noise
    and x scores 0, and one that predicts 0 scores the mean square of the velocity."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    seen = {}

    def oracle(hidden_states, timestep, **kwargs):
        sigma = (timestep / 1000).view(-1, 1, 1, 1)
        noise = (hidden_states - (1 - sigma) * latents) / sigma
        seen["sigma"] = sigma.flatten()
        return (noise - latents,)

    loss = fm.flow_matching_loss(oracle, scheduler, latents, None, None, torch.Generator().manual_seed(0))
    assert loss < 1e-8
    assert ((seen["sigma"] > 0) & (seen["sigma"] <= 1)).all()
    zero = fm.flow_matching_loss(
        lambda hidden_states, **kw: (torch.zeros_like(hidden_states),),
        scheduler,
        latents,
        None,
        None,
        torch.Generator().manual_seed(0),
    )
    assert zero > 1.0
