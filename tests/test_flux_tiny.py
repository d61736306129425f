"""course_utils.flux_tiny: lesson 09's tiny FluxPipeline builds offline, is the same on every build, and runs."""

from __future__ import annotations

import socket

import pytest
import torch

from course_utils.flux_tiny import TEXT_WIDTH, tiny_flux_pipeline

PROMPT = "A painting of a squirrel eating a burger, 42!"
CALL = dict(prompt=PROMPT, height=16, width=16, num_inference_steps=2, max_sequence_length=48)


@pytest.fixture(scope="module")
def pipes(one_thread):
    """The pipeline without and with a guidance input, built once for this file."""
    return {False: tiny_flux_pipeline(), True: tiny_flux_pipeline(guidance_embeds=True)}


def test_builds_without_the_network(monkeypatch, one_thread):
    def refuse(*args, **kwargs):
        raise OSError("this test has no network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    pipe = tiny_flux_pipeline()
    assert type(pipe).__name__ == "FluxPipeline"
    assert pipe.transformer.config.in_channels == 4 * pipe.vae.config.latent_channels  # 2 x 2 packing


@pytest.mark.parametrize("guidance_embeds", [False, True])
def test_same_weights_on_every_build_and_caller_rng_untouched(pipes, guidance_embeds):
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    again = tiny_flux_pipeline(guidance_embeds)
    assert torch.equal(torch.rand(3), expected_draw), "building the pipeline changed the caller's random numbers"
    for name in ("transformer", "text_encoder", "text_encoder_2", "vae"):
        ours, theirs = getattr(pipes[guidance_embeds], name).state_dict(), getattr(again, name).state_dict()
        assert ours.keys() == theirs.keys(), name
        assert all(torch.equal(ours[key], theirs[key]) for key in ours), f"{name} differs between two builds"
    assert again.transformer.config.guidance_embeds is guidance_embeds


def test_t5_tokenizer_round_trips_a_prompt(pipes):
    tokenizer = pipes[False].tokenizer_2
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    ids = tokenizer(PROMPT).input_ids
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == PROMPT
    assert tokenizer.convert_ids_to_tokens(ids)[:3] == ["\u2581", "A", "\u2581painting"]  # known words stay whole
    padded = tokenizer(PROMPT, padding="max_length", max_length=48).input_ids
    assert len(padded) == 48 and padded[len(ids) :] == [tokenizer.pad_token_id] * (48 - len(ids))


def test_encode_prompt_shapes(pipes):
    prompt_embeds, pooled, text_ids = pipes[False].encode_prompt(PROMPT, max_sequence_length=48)
    assert prompt_embeds.shape == (1, 48, TEXT_WIDTH)  # T5 rows, as many as max_sequence_length
    assert pooled.shape == (1, TEXT_WIDTH)  # CLIP's pooled output
    assert text_ids.shape == (48, 3) and not text_ids.any()
    assert torch.isfinite(prompt_embeds).all() and torch.isfinite(pooled).all()


@pytest.mark.parametrize("guidance_embeds", [False, True])
def test_pipeline_output_for_a_fixed_seed(pipes, guidance_embeds):
    pipe = pipes[guidance_embeds]
    images = pipe(**CALL, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert images.shape == (1, 3, 16, 16) and torch.isfinite(images).all()
    latents = pipe(**CALL, generator=torch.Generator().manual_seed(0), output_type="latent").images
    again = pipe(**CALL, generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert latents.shape == (1, (16 // 2) * (16 // 2), 4)  # one token per 2 x 2 square of 1-channel latents
    assert torch.isfinite(latents).all() and torch.equal(latents, again)


def test_guidance_reaches_the_transformer_only_with_guidance_embeds(pipes):
    def latents(pipe, guidance_scale):
        generator = torch.Generator().manual_seed(0)
        return pipe(**CALL, guidance_scale=guidance_scale, generator=generator, output_type="latent").images

    assert torch.equal(latents(pipes[False], 1.0), latents(pipes[False], 5.0))  # no guidance input: ignored
    assert not torch.equal(latents(pipes[True], 1.0), latents(pipes[True], 5.0))
