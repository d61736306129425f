"""Tests for course_utils.attention (cross-attention heat maps) and lesson 06's exercise checks, on a tiny
random Stable Diffusion pipeline of the real architecture."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from course_utils.attention import (
    CrossAttentionRecorder,
    cross_attention_layers,
    cross_attention_probs,
    latent_grid,
    normalize_map,
    overlay,
    prompt_words,
    trace_cross_attention,
    word_positions,
)
from course_utils.exercises.lesson06_attention import (
    check_manual_map,
    check_start_token_share,
    check_word_positions,
    start_token_shares,
)
from course_utils.models import architectures as arch

PROMPT = "a photo of a corgi wearing sunglasses next to a teacup"
STEPS = 2


@pytest.fixture(scope="module")
def pipe():
    """The smoke-mode Stable Diffusion stand-in (random weights, real architecture), built in memory."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from course_utils.models.standins import clip_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        text_config = CLIPTextConfig(**arch.CLIP_TEXT_COMMON, **arch.SD_TEXT_ENCODER["tiny"])
        pipe = StableDiffusionPipeline(
            vae=AutoencoderKL(**arch.SD_VAE["tiny"]),
            text_encoder=CLIPTextModel(text_config),
            tokenizer=clip_tokenizer(),
            unet=UNet2DConditionModel(**arch.SD_UNET["tiny"]),
            scheduler=PNDMScheduler.from_config(arch.SD_SCHEDULER_CONFIG),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompt=PROMPT, seed=0, **kwargs) -> torch.Tensor:
    kwargs.setdefault("num_inference_steps", STEPS)
    generator = torch.Generator().manual_seed(seed)
    return pipe(prompt, generator=generator, output_type="pt", **kwargs).images


@pytest.fixture(scope="module")
def traced(pipe):
    """(image, trace) of one traced generation of PROMPT at 64x64."""
    with trace_cross_attention(pipe) as trace:
        image = generate(pipe)
    return image, trace


def processors(unet) -> dict:
    return dict(unet.attn_processors)


# -- processors: installed on attn2 only, restored on exit ---------------------------------------------------------


def test_installs_recorders_on_cross_attention_only_and_restores(pipe):
    before = processors(pipe.unet)
    with trace_cross_attention(pipe):
        during = processors(pipe.unet)
        for name, proc in during.items():
            if ".attn2." in name:
                assert isinstance(proc, CrossAttentionRecorder)
                assert proc.original is before[name]  # the SDPA processor still computes the output
            else:
                assert proc is before[name]  # self-attention keeps SDPA (AttnProcessor2_0), untouched
    assert (
        sum(isinstance(p, CrossAttentionRecorder) for p in during.values())
        == len(cross_attention_layers(pipe.unet))
        == 7
    )
    after = processors(pipe.unet)
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] for k in before)
    assert not pipe.unet._forward_pre_hooks


def test_restores_after_an_exception(pipe):
    before = processors(pipe.unet)
    with pytest.raises(KeyboardInterrupt):
        with trace_cross_attention(pipe):
            raise KeyboardInterrupt
    assert all(processors(pipe.unet)[k] is before[k] for k in before)
    assert not pipe.unet._forward_pre_hooks


def test_restores_after_an_error_inside_the_unet(pipe):
    before = processors(pipe.unet)
    latents = torch.zeros(3, 4, 8, 8)  # an odd batch cannot be [uncond, cond]
    text = torch.zeros(3, 77, pipe.unet.config.cross_attention_dim)
    with pytest.raises(ValueError, match="cfg=False"):
        with trace_cross_attention(pipe.unet):
            pipe.unet(latents, 10, encoder_hidden_states=text)
    assert all(processors(pipe.unet)[k] is before[k] for k in before)


# -- the image does not change -------------------------------------------------------------------------------------


def test_image_is_bit_identical_with_and_without_tracing(pipe, traced):
    image, trace = traced
    plain = generate(pipe)
    assert torch.equal(plain, image)
    assert len(trace.records) > 0
    assert not torch.equal(generate(pipe, seed=1), image)  # the comparison can fail: another seed differs


# -- what is recorded -------------------------------------------------------------------------------------------------


def test_one_record_per_layer_and_unet_call(pipe, traced):
    _, trace = traced
    unet_calls = len(pipe.scheduler.timesteps)  # PNDM calls the UNet once more than num_inference_steps
    assert len(trace.timesteps) == unet_calls == len(trace.steps)
    assert len(trace.records) == 7 * unet_calls
    assert trace.timesteps == [float(t) for t in pipe.scheduler.timesteps]
    assert list(trace.layers_by_size()) == [(2, 2), (4, 4), (8, 8)]
    for record in trace.records:
        assert record.maps.shape[:2] == (1, 77)  # conditional half only
        assert torch.allclose(record.maps.float().sum(1), torch.ones(1, *record.size), atol=2e-3)  # softmax over tokens


def test_records_are_the_conditional_half_of_the_attention(pipe):
    layer_name, layer = next(iter(cross_attention_layers(pipe.unet).items()))
    inputs = {}
    hook = layer.register_forward_pre_hook(
        lambda m, a, k: inputs.update(hs=a[0], enc=k["encoder_hidden_states"]), with_kwargs=True
    )
    try:
        with trace_cross_attention(pipe) as trace:
            generate(pipe, num_inference_steps=1)
    finally:
        hook.remove()
    recorded = [r for r in trace.records if r.layer == layer_name][-1].maps.float()
    with torch.no_grad():  # written out independently: softmax(Q K^T / sqrt(d)) per head, then the head mean
        q = layer.to_q(inputs["hs"]).unflatten(-1, (layer.heads, -1)).transpose(1, 2)
        k = layer.to_k(inputs["enc"]).unflatten(-1, (layer.heads, -1)).transpose(1, 2)
        probs = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1).mean(1)  # (2, pixels, 77)
    uncond, cond = (p.transpose(0, 1).reshape(77, *recorded.shape[-2:]) for p in probs)
    assert torch.allclose(recorded[0], cond, atol=1e-3)
    assert not torch.allclose(recorded[0], uncond, atol=1e-3)


def test_cross_attention_probs_matches_diffusers_attention_output(pipe):
    """The probabilities times V, through to_out, give the layer's own (SDPA) output: the map is the real attention."""
    layer = next(iter(cross_attention_layers(pipe.unet).values()))
    hs = torch.randn(2, 16, layer.to_q.in_features)
    enc = torch.randn(2, 77, layer.to_k.in_features)
    with torch.no_grad():
        probs = cross_attention_probs(layer, hs, enc)  # (B, heads, pixels, tokens)
        v = layer.to_v(enc).unflatten(-1, (layer.heads, -1)).transpose(1, 2)
        out = layer.to_out[0]((probs @ v).transpose(1, 2).flatten(2))
        expected = layer(hs, encoder_hidden_states=enc)
    assert torch.allclose(out, expected, atol=1e-5)


# -- maps: shapes, normalisation, words, selection ----------------------------------------------------------------


def test_word_maps_shapes_and_normalisation(traced):
    _, trace = traced
    maps = trace.word_maps(PROMPT)
    assert list(maps) == ["a", "photo", "of", "corgi", "wearing", "sunglasses", "next", "to", "teacup"]
    for heat in maps.values():
        assert heat.shape == (64, 64)
        assert heat.min().item() == 0.0 and heat.max().item() == pytest.approx(1.0)
    tokens = trace.token_maps()
    assert tokens.shape == (77, 64, 64)
    assert torch.allclose(tokens.sum(0), torch.ones(64, 64), atol=5e-3)  # still probabilities after averaging
    raw = trace.word_map(PROMPT, "corgi", normalize=False)
    assert torch.allclose(raw, tokens[5])


def test_subword_pieces_are_merged_into_words(traced):
    _, trace = traced
    words = {w.text: w.positions for w in trace.words(PROMPT)}
    assert words["teacup"] == (11, 12)  # 'te' + 'acup</w>'
    tokens = trace.token_maps()
    assert torch.allclose(trace.word_map(PROMPT, "teacup"), normalize_map(tokens[11] + tokens[12]))
    assert torch.allclose(trace.word_map(PROMPT, "Teacup"), trace.word_map(PROMPT, "teacup"))  # CLIP lower-cases
    assert word_positions(trace.tokenizer, PROMPT, "a") == [1, 4, 10]  # every occurrence
    assert word_positions(trace.tokenizer, PROMPT, "wearing sunglasses") == [6, 7]  # a phrase


def test_prompt_words_handles_punctuation():
    from course_utils.models.standins import clip_tokenizer

    words = prompt_words(clip_tokenizer(), "A Kaleidoscope, please!")
    assert [(w.text, w.positions) for w in words] == [
        ("a", (1,)),
        ("kaleidoscope", (2, 3)),
        (",", (4,)),
        ("please", (5,)),
        ("!", (6,)),
    ]


def test_layer_and_step_selection(traced):
    _, trace = traced
    sizes = trace.layers_by_size()
    coarse, fine = sizes[(2, 2)], sizes[(8, 8)]
    assert len(trace.select(layers=fine, steps=[0])) == len(fine)
    assert len(trace.select(steps=slice(-1, None))) == 7
    assert not torch.allclose(
        trace.word_map(PROMPT, "corgi", layers=coarse), trace.word_map(PROMPT, "corgi", layers=fine)
    )
    assert not torch.allclose(trace.word_map(PROMPT, "corgi", steps=[0]), trace.word_map(PROMPT, "corgi", steps=[-1]))
    one = trace.select(layers=fine[0], steps=[-1])[0]
    expected = torch.nn.functional.interpolate(one.maps[:, 5:6].float(), size=(64, 64), mode="bilinear")[0, 0]
    assert torch.allclose(trace.word_map(PROMPT, "corgi", layers=fine[0], steps=-1, normalize=False), expected)


# -- batches and sizes -----------------------------------------------------------------------------------------------


def test_batch_of_prompts(pipe):
    prompts = [PROMPT, "a lighthouse at night"]
    with trace_cross_attention(pipe) as trace:
        images = generate(pipe, prompt=prompts)
    assert images.shape[0] == 2
    assert all(r.maps.shape[0] == 2 for r in trace.records)
    first, second = trace.word_maps(prompts[0], index=0), trace.word_maps(prompts[1], index=1)
    assert "lighthouse" in second and "corgi" in first
    assert not torch.allclose(trace.token_maps(index=0), trace.token_maps(index=1))
    with pytest.raises(ValueError, match="0..1"):
        trace.token_maps(index=2)


def test_without_classifier_free_guidance(pipe):
    with trace_cross_attention(pipe) as trace:  # guidance_scale 1: the pipeline runs only the conditional batch
        image = generate(pipe, guidance_scale=1.0, num_inference_steps=1)
    assert all(r.maps.shape[0] == 1 for r in trace.records)
    assert torch.equal(image, generate(pipe, guidance_scale=1.0, num_inference_steps=1))


def test_non_square_image(pipe):
    with trace_cross_attention(pipe) as trace:
        image = generate(pipe, height=64, width=96, num_inference_steps=1)
    assert image.shape[-2:] == (64, 96)
    assert list(trace.layers_by_size()) == [(2, 3), (4, 6), (8, 12)]
    heat = trace.word_map(PROMPT, "sunglasses")
    assert heat.shape == (64, 96) and heat.max().item() == pytest.approx(1.0)


def test_latent_grid_rounds_up_like_the_unet(pipe):
    assert latent_grid(64 * 64, (64, 64)) == (64, 64)
    assert latent_grid(12 * 16, (96, 128)) == (12, 16)
    assert latent_grid(5 * 3, (9, 5)) == (5, 3)  # 72x40 px: 9x5 latents -> 5x3 -> 3x2
    with trace_cross_attention(pipe.unet) as trace:  # a bare UNet at an odd latent size (72x40 px)
        pipe.unet(torch.randn(2, 4, 9, 5), 10, encoder_hidden_states=torch.randn(2, 77, 32))
    assert list(trace.layers_by_size()) == [(3, 2), (5, 3), (9, 5)]
    assert trace.image_size() == (72, 40)
    with pytest.raises(ValueError, match="no downsampled grid"):
        latent_grid(50, (64, 64))


# -- errors ------------------------------------------------------------------------------------------------------------


def test_word_not_in_prompt_lists_the_words(traced):
    _, trace = traced
    with pytest.raises(ValueError, match=r"'dog' is not a word.*'corgi', 'wearing'"):
        trace.word_map(PROMPT, "dog")
    with pytest.raises(ValueError, match="Did you mean 'corgi'"):
        trace.word_map(PROMPT, "corgis")
    with pytest.raises(ValueError, match="not a word"):
        trace.word_map(PROMPT, "scope")  # part of a word is not a word


def test_word_beyond_the_context_limit(traced):
    _, trace = traced
    long_prompt = "a " * 80 + "dragon"
    with pytest.raises(ValueError, match="77-token limit"):
        word_positions(trace.tokenizer, long_prompt, "dragon")


def test_model_without_cross_attention():
    from diffusers import UNet2DModel

    unet = UNet2DModel(**arch.DDPM_UNET["tiny"])
    with pytest.raises(ValueError, match="no cross-attention layers"):
        with trace_cross_attention(unet):
            pass
    with pytest.raises(TypeError, match="pipeline with a `unet`"):
        with trace_cross_attention("sd15"):
            pass


def test_selection_errors(traced, pipe):
    _, trace = traced
    with pytest.raises(ValueError, match="Did you mean"):
        trace.select(layers=trace.layers[0].replace("attn2", "attn1"))
    with pytest.raises(ValueError, match="out of range"):
        trace.select(steps=[99])
    with trace_cross_attention(pipe) as empty:
        pass
    with pytest.raises(ValueError, match="nothing was recorded"):
        empty.word_maps(PROMPT)


# -- overlay ---------------------------------------------------------------------------------------------------------


def test_overlay_blends_a_resized_map():
    image = Image.new("RGB", (96, 64), "white")
    heat = torch.zeros(8, 12)
    heat[:, 6:] = 1.0
    out = overlay(image, heat, alpha=0.5)
    assert out.size == (96, 64)
    left, right = out.getpixel((5, 30)), out.getpixel((90, 30))
    assert left != right and left[2] > left[1] and right[0] > right[2]  # viridis: low = dark purple, high = yellow
    with pytest.raises(ValueError, match="2-D"):
        overlay(image, torch.zeros(1, 8, 12))


def test_overlay_draws_the_map_over_a_grey_picture():
    heat = torch.rand(8, 8, generator=torch.Generator().manual_seed(0))
    red = Image.new("RGB", (64, 64), (220, 30, 30))
    level = red.convert("L").getpixel((0, 0))
    grey = Image.new("RGB", (64, 64), (level, level, level))
    assert overlay(red, heat).tobytes() == overlay(grey, heat).tobytes()  # the picture's colour does not show
    assert overlay(red, heat).tobytes() != overlay(Image.new("RGB", (64, 64), "white"), heat).tobytes()


# -- exercise checks ---------------------------------------------------------------------------------------------------


def test_check_word_positions(traced, capsys):
    tokenizer = traced[1].tokenizer
    prompt = "a corgi looking through a kaleidoscope"
    assert check_word_positions(tokenizer, prompt, "kaleidoscope", [6, 7])
    assert not check_word_positions(tokenizer, prompt, "kaleidoscope", [5, 6])
    assert "position 0" in capsys.readouterr().out
    assert not check_word_positions(tokenizer, prompt, "kaleidoscope", [6])
    assert "'</w>'" in capsys.readouterr().out
    assert not check_word_positions(tokenizer, prompt, "kaleidoscope", None)
    assert "Not attempted" in capsys.readouterr().out
    for wrong_type in (6, "six", [6, "seven"]):  # a wrong type gets a verdict, never an exception
        assert not check_word_positions(tokenizer, prompt, "kaleidoscope", wrong_type)
        assert "list of ints" in capsys.readouterr().out


def test_check_manual_map(traced):
    _, trace = traced
    fine = trace.layers_by_size()[(8, 8)]
    records = [r for r in trace.records if r.layer in fine]
    stacked = torch.stack([r.maps[0, 7].float() for r in records]).mean(0)
    by_hand = torch.nn.functional.interpolate(stacked[None, None], size=(64, 64), mode="bilinear")[0, 0]
    by_hand = (by_hand - by_hand.min()) / (by_hand.max() - by_hand.min())
    assert check_manual_map(trace, PROMPT, "sunglasses", by_hand, layers=fine)
    assert not check_manual_map(trace, PROMPT, "sunglasses", by_hand * 3, layers=fine)  # not normalised
    assert not check_manual_map(trace, PROMPT, "sunglasses", by_hand, layers=trace.layers_by_size()[(2, 2)])
    assert not check_manual_map(trace, PROMPT, "sunglasses", by_hand[:8, :8], layers=fine)
    assert not check_manual_map(trace, PROMPT, "sunglasses", None)


def test_check_start_token_share(traced, capsys):
    _, trace = traced
    share = torch.stack([r.maps[0, 0].float().mean() for r in trace.records]).mean().item()
    assert check_start_token_share(trace, share)
    assert check_start_token_share(trace, share * 1.005)  # within 1%
    assert check_start_token_share(trace, torch.tensor(share))
    assert check_start_token_share(trace, start_token_shares(trace)[1])
    capsys.readouterr()
    assert not check_start_token_share(trace, share * 1.05)
    assert f"{share:.4f}" not in capsys.readouterr().out  # the failure does not give the answer away
    assert not check_start_token_share(trace, 1 / 77)  # uniform attention is never accepted
    assert "uniform" in capsys.readouterr().out
    assert not check_start_token_share(trace, 1 / 77 + 0.05)
    assert not check_start_token_share(trace, 1.5)
    assert not check_start_token_share(trace, None)
    for wrong_type in ("a third", f"{share}", True, [0.1, 0.2], object()):
        assert not check_start_token_share(trace, wrong_type)
        assert "one number" in capsys.readouterr().out
