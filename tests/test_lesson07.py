"""Lesson 07: the notebook's configs, VAE loss, caption dropout and UNet loss are the training script's
(course_utils.text_to_image), its guidance loop gives StableDiffusionPipeline's pixels, the helpers do what they say,
and each exercise check accepts right answers and rejects the usual wrong ones with the right hint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from notebook_code import notebook_definitions as _definitions
from notebook_code import notebook_path

from course_utils import text_to_image as t2i
from course_utils.exercises.lesson07_text_to_image import (
    check_drop_captions,
    check_min_snr_weight,
    check_scaling_factor,
)
from course_utils.models import architectures as arch
from course_utils.models.standins import clip_tokenizer

NOTEBOOK = notebook_path("07_text_to_image_from_scratch.ipynb")
CAPTIONS = ["red apple", "rocket", "grinning face", "thumbs up"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread for these tiny models


def notebook_definitions(marker: str, names: set[str], **namespace) -> dict:
    """Run only the functions and assignments called `names` of the lesson's cell containing `marker`."""
    return _definitions(NOTEBOOK, marker, names, **namespace)


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer()


@pytest.fixture(scope="module")
def parts():
    """Fresh (random) text encoder, UNet and noise schedule of the emoji model, in eval mode."""
    torch.manual_seed(0)
    return t2i.make_text_encoder().eval(), t2i.make_unet().eval(), t2i.make_scheduler()


# ---- the notebook's cells are the training script's code ----------------------------------------------------------


def test_notebook_configs_are_the_emoji_models():
    assert notebook_definitions("vae_config = dict(", {"vae_config"})["vae_config"] == arch.SD_VAE["emoji"]
    text = notebook_definitions("text_config = dict(", {"text_config"})["text_config"]
    assert text == {**arch.CLIP_TEXT_COMMON, **arch.SD_TEXT_ENCODER["emoji"]}
    assert notebook_definitions("unet_config = dict(", {"unet_config"})["unet_config"] == arch.SD_UNET["emoji"]


def test_notebook_vae_loss_is_the_scripts():
    ns = notebook_definitions("def vae_loss(", {"vae_loss"}, torch=torch, F=F)
    torch.manual_seed(0)
    vae = t2i.make_vae()
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ours, our_parts = ns["vae_loss"](vae, images, torch.Generator().manual_seed(3))
        theirs, their_parts = t2i.vae_loss(vae, images, torch.Generator().manual_seed(3))
        other, _ = t2i.vae_loss(vae, images, torch.Generator().manual_seed(4))
    assert torch.equal(ours, theirs) and our_parts == their_parts
    assert not torch.equal(ours, other)  # the sampled latent matters, so equality above means something


def test_notebook_drop_captions_is_the_scripts(tokenizer):
    ns = notebook_definitions("def drop_captions(", {"drop_captions"}, torch=torch)
    ids, empty = t2i.tokenize(tokenizer, CAPTIONS * 50), t2i.tokenize(tokenizer, [""])
    ours = ns["drop_captions"](ids, empty, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(ours, t2i.drop_captions(ids, empty, 0.3, torch.Generator().manual_seed(1)))
    assert 0 < (ours == empty).all(dim=1).sum() < len(ids)


@pytest.mark.parametrize("snr_gamma", [5.0, None])
def test_notebook_loss_is_the_scripts(tokenizer, parts, snr_gamma):
    ns = notebook_definitions("def text_to_image_loss(", {"text_to_image_loss"}, torch=torch, F=F)
    text_encoder, unet, scheduler = parts
    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ids = t2i.tokenize(tokenizer, CAPTIONS)
    with torch.no_grad():
        ours = ns["text_to_image_loss"](
            unet, text_encoder, scheduler, latents, ids, torch.Generator().manual_seed(5), snr_gamma=snr_gamma
        )
        theirs = t2i.text_to_image_loss(
            unet, text_encoder, scheduler, latents, ids, torch.Generator().manual_seed(5), snr_gamma=snr_gamma
        )
    assert torch.equal(ours, theirs)


def test_notebook_guidance_loop_matches_the_pipeline(tokenizer, parts):
    text_encoder, unet, _ = parts
    torch.manual_seed(0)
    pipe = t2i.assemble_pipeline(t2i.make_vae().eval(), text_encoder, tokenizer, unet)
    pipe.set_progress_bar_config(disable=True)
    ns = notebook_definitions(
        "def emoji_generate(", {"emoji_generate"}, torch=torch, randn_tensor=randn_tensor, pipe=pipe, device="cpu"
    )
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    ours = ns["emoji_generate"]("red apple", scheduler, 4, 5.0, torch.Generator().manual_seed(1))
    theirs = pipe(
        "red apple",
        num_inference_steps=4,
        guidance_scale=5.0,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(1),
        output_type="pt",
    ).images
    weaker = pipe(
        "red apple",
        num_inference_steps=4,
        guidance_scale=2.0,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(1),
        output_type="pt",
    ).images
    assert ours.shape == theirs.shape == (1, 3, 64, 64)
    assert (ours - theirs).abs().max().item() == 0.0
    assert (ours - weaker).abs().max().item() > 1e-4  # the guidance scale changes the pixels: the parity is not vacuous


def test_assembled_pipeline_has_the_shipped_scheduler(tokenizer, parts):
    from diffusers import UniPCMultistepScheduler

    from course_utils.models.emoji import models_dir

    text_encoder, unet, _ = parts
    pipe = t2i.assemble_pipeline(t2i.make_vae().eval(), text_encoder, tokenizer, unet)
    shipped = UniPCMultistepScheduler.from_pretrained(models_dir() / "emoji-sd", subfolder="scheduler")
    assert type(pipe.scheduler) is type(shipped)
    settings = [{k: v for k, v in s.config.items() if not k.startswith("_")} for s in (pipe.scheduler, shipped)]
    assert settings[0] == settings[1]  # the same noise schedule and sampler settings


# ---- course_utils.text_to_image ---------------------------------------------------------------------------------


def test_scaling_factor_is_one_over_the_latents_spread():
    g = torch.Generator().manual_seed(1)  # not scaling_factor's own seed (0), or its noise would equal these means
    means = torch.randn(500, 4, 8, 8, generator=g) * 4
    assert t2i.scaling_factor(means, torch.full_like(means, 0.01)) == pytest.approx(0.25, rel=0.01)
    assert t2i.scaling_factor(torch.zeros_like(means), torch.full_like(means, 2.0)) == pytest.approx(0.5, rel=0.01)
    both = t2i.scaling_factor(means, torch.full_like(means, 3.0))  # spreads add in quadrature: sqrt(16 + 9) = 5
    assert both == pytest.approx(0.2, rel=0.01)


def test_drop_captions(tokenizer):
    ids, empty = t2i.tokenize(tokenizer, CAPTIONS * 1000), t2i.tokenize(tokenizer, [""])
    g = torch.Generator
    assert torch.equal(t2i.drop_captions(ids, empty, 0.0, g().manual_seed(0)), ids)
    assert (t2i.drop_captions(ids, empty, 1.0, g().manual_seed(0)) == empty).all()
    some = t2i.drop_captions(ids, empty, 0.25, g().manual_seed(0))
    dropped, kept = (some == empty).all(dim=1), (some == ids).all(dim=1)
    assert (dropped | kept).all() and not (dropped & kept).any()
    assert dropped.float().mean().item() == pytest.approx(0.25, abs=0.03)
    assert torch.equal(some, t2i.drop_captions(ids, empty, 0.25, g().manual_seed(0)))


def test_min_snr_weight(parts):
    scheduler = parts[2]
    t = torch.arange(1000)
    alphas_cumprod = scheduler.alphas_cumprod
    snr = alphas_cumprod / (1 - alphas_cumprod)
    weight = t2i.min_snr_weight(scheduler, t, 5.0)
    assert torch.equal(weight[snr <= 5], torch.ones(int((snr <= 5).sum())))
    assert torch.allclose(weight[snr > 5], 5 / snr[snr > 5])
    assert weight[0] < 0.01 and weight.max() == 1.0


def test_loss_weights_each_image_by_min_snr(tokenizer, parts):
    text_encoder, unet, scheduler = parts
    latents = torch.randn(8, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ids = t2i.tokenize(tokenizer, CAPTIONS * 2)
    seed = 5  # its timesteps include 113 and 86, which min-SNR turns down
    replay = torch.Generator().manual_seed(seed)  # text_to_image_loss draws the noise first, then the timesteps
    noise = torch.randn(latents.shape, generator=replay)
    timesteps = torch.randint(0, 1000, (8,), generator=replay)
    weight = t2i.min_snr_weight(scheduler, timesteps, 5.0)
    assert (weight < 1).any(), "pick a seed whose timesteps include a nearly clean one, or the test proves nothing"
    with torch.no_grad():
        pred = unet(scheduler.add_noise(latents, noise, timesteps), timesteps, text_encoder(ids)[0]).sample
        per_image = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
        args = (unet, text_encoder, scheduler, latents, ids)
        weighted = t2i.text_to_image_loss(*args, torch.Generator().manual_seed(seed))
        plain = t2i.text_to_image_loss(*args, torch.Generator().manual_seed(seed), snr_gamma=None)
    assert weighted.item() == pytest.approx((weight * per_image).mean().item(), rel=1e-5)
    assert plain.item() == pytest.approx(per_image.mean().item(), rel=1e-5)
    assert weighted.item() < plain.item()


def test_tokenize_pads_to_77(tokenizer):
    ids = t2i.tokenize(tokenizer, ["red apple", ""])
    assert ids.shape == (2, 77) and ids.dtype == torch.long
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    assert ids[0, :4].tolist() == [bos, 736, 3055, eos]  # CLIP's ids for "red" and "apple"
    assert (ids[0, 4:] == pad).all() and ids[1, 0] == bos and (ids[1, 1:] == pad).all()
    long = t2i.tokenize(tokenizer, ["apple " * 100])
    assert long.shape == (1, 77) and long[0, -1] == eos  # truncated, still ends with the end token


# ---- exercise checks ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaussians() -> tuple[torch.Tensor, torch.Tensor]:
    """Latent Gaussians whose sampled spread (sqrt(2^2 + 1^2) = 2.24) differs from the means' (2) and from 1."""
    g = torch.Generator().manual_seed(1)  # not scaling_factor's own seed (0), or its noise would equal these means
    means = torch.randn(300, 4, 8, 8, generator=g) * 2
    return means, torch.ones_like(means)


def test_check_scaling_factor(gaussians, capsys):
    means, stds = gaussians
    latents = means + stds * torch.randn(means.shape, generator=torch.Generator().manual_seed(9))
    assert check_scaling_factor(None, means, stds) is False and "Not attempted" in capsys.readouterr().out
    assert check_scaling_factor(1 / latents.std(), means, stds) is True and "✅" in capsys.readouterr().out
    assert check_scaling_factor(float(1 / latents.std()), means, stds) is True
    cases = {
        float(latents.std()): "1 / std",
        float(1 / latents.var()): "square root",
        float(1 / means.std()): "means alone",
        float(1 / stds.mean()): "each Gaussian's own spread",
        0.18: "torch.randn_like",
        "a lot": "expected a number",
    }
    for answer, hint in cases.items():
        assert check_scaling_factor(answer, means, stds) is False, answer
        assert hint in capsys.readouterr().out, answer


def test_check_drop_captions(capsys):
    def bernoulli(input_ids, empty_ids, p, generator):
        drop = torch.bernoulli(torch.full((len(input_ids), 1), float(p)), generator=generator).bool()
        return torch.where(drop, empty_ids, input_ids)

    def keeps_with_p(input_ids, empty_ids, p, generator):
        return t2i.drop_captions(input_ids, empty_ids, 1 - p, generator)

    def one_coin(input_ids, empty_ids, p, generator):
        return empty_ids.expand_as(input_ids).clone() if torch.rand(1, generator=generator) < p else input_ids

    def zeros(input_ids, empty_ids, p, generator):
        drop = torch.rand(len(input_ids), generator=generator) < p
        return torch.where(drop[:, None], torch.zeros_like(input_ids), input_ids)

    def global_rng(input_ids, empty_ids, p, generator):
        drop = torch.rand(len(input_ids)) < p
        return torch.where(drop[:, None], empty_ids, input_ids)

    def crashes(input_ids, empty_ids, p, generator):
        raise IndexError("oops")

    assert check_drop_captions(None) is False and "Not attempted" in capsys.readouterr().out
    assert check_drop_captions(lambda *args: None) is False and "Not attempted" in capsys.readouterr().out
    assert check_drop_captions(t2i.drop_captions) is True and "✅" in capsys.readouterr().out
    assert check_drop_captions(bernoulli) is True
    capsys.readouterr()
    wrong = {
        keeps_with_p: "probability p",
        one_coin: "one random number per caption",
        zeros: "not by zeros",
        global_rng: "same generator seed",
        crashes: "IndexError",
    }
    for fn, hint in wrong.items():
        assert check_drop_captions(fn) is False, fn.__name__
        out = capsys.readouterr().out
        assert "❌" in out and hint in out, (fn.__name__, out)


def test_check_min_snr_weight(parts, capsys):
    scheduler = parts[2]
    ac = scheduler.alphas_cumprod

    def right(timesteps, gamma):
        snr = ac[timesteps] / (1 - ac[timesteps])
        return torch.minimum(snr, torch.tensor(gamma)) / snr

    def no_division(timesteps, gamma):
        return torch.clamp(ac[timesteps] / (1 - ac[timesteps]), max=gamma)

    def no_min(timesteps, gamma):
        return gamma / (ac[timesteps] / (1 - ac[timesteps]))

    def square_root(timesteps, gamma):
        snr = (ac[timesteps] / (1 - ac[timesteps])).sqrt()
        return torch.clamp(snr, max=gamma) / snr

    assert check_min_snr_weight(None, scheduler) is False and "Not attempted" in capsys.readouterr().out
    assert check_min_snr_weight(right, scheduler) is True and "✅" in capsys.readouterr().out
    wrong = {
        no_division: "divide it by SNR",
        no_min: "without the min",
        square_root: "square root",
        lambda t, g: torch.ones(3): "one weight per timestep",
        lambda t, g: 1 / 0: "ZeroDivisionError",
    }
    for fn, hint in wrong.items():
        assert check_min_snr_weight(fn, scheduler) is False
        out = capsys.readouterr().out
        assert "❌" in out and hint in out, out
