"""Lesson 02: the notebook's Stable Diffusion loop gives StableDiffusionPipeline's pixels (fp32, tiny stand-in, five
schedulers), the test would notice a missing scale_model_input, and each exercise check accepts a right answer and
rejects the usual wrong ones with the right hint."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
)
from diffusers.utils.torch_utils import randn_tensor
from notebook_code import cell_sources, notebook_cell, notebook_code, notebook_path
from transformers import CLIPTextModel, CLIPTokenizer

from course_utils.exercises.lesson02_stable_diffusion import (
    cfg_reference,
    check_cfg,
    check_latent_shape,
    check_text_embeddings,
    encode_texts,
    expected_latent_shape,
)

NOTEBOOK = notebook_path("02_stable_diffusion_deconstructed.ipynb")
PROMPT = "red apple"  # the trained emoji model knows emoji names
SCHEDULERS = {
    "PNDM": (PNDMScheduler, {}),
    "UniPC": (UniPCMultistepScheduler, {}),
    "DPM-Solver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "Euler": (EulerDiscreteScheduler, {}),
    "DDIM": (DDIMScheduler, {}),
}
SETTINGS = dict(num_inference_steps=5, guidance_scale=7.5, height=64, width=64)


# conftest.py: one CPU thread. On a busy 2-core machine, OpenMP threads waiting for each other made these tests 10x
# slower (measured: 1-8 s per UNet call with 2 threads, 0.07 s with 1).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sd(emoji_sd_folder) -> SimpleNamespace:
    """What course.model("sd14") gives in smoke mode (the course's trained emoji model), loaded part by part in fp32
    as the notebook loads it."""
    folder = emoji_sd_folder
    return SimpleNamespace(
        folder=folder,
        tokenizer=CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        text_encoder=CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=torch.float32),
        vae=AutoencoderKL.from_pretrained(folder, subfolder="vae", dtype=torch.float32),
        unet=UNet2DConditionModel.from_pretrained(folder, subfolder="unet", dtype=torch.float32),
        scheduler_config=PNDMScheduler.from_pretrained(folder, subfolder="scheduler").config,
    )


@pytest.fixture(scope="module")
def loop(sd) -> dict:
    """The notebook's own `sd_generate` cell, run with the stand-in's parts as its globals (prints silenced)."""
    source = notebook_cell(NOTEBOOK, "def sd_generate(")
    definitions = source[: source.index("\nsettings = ")]  # the cell ends by calling the function on notebook state
    namespace = dict(tokenizer=sd.tokenizer, text_encoder=sd.text_encoder, vae=sd.vae, unet=sd.unet)
    exec(compile(definitions, str(NOTEBOOK), "exec"), namespace)
    return namespace


def make_scheduler(sd, name: str):
    cls, extra = SCHEDULERS[name]
    return cls.from_config(sd.scheduler_config, **extra)


def same_parts_pipeline(sd, scheduler) -> StableDiffusionPipeline:
    """StableDiffusionPipeline built from the parts the lesson's loop uses (no safety checker)."""
    pipe = StableDiffusionPipeline.from_pretrained(
        sd.folder,
        vae=sd.vae,
        text_encoder=sd.text_encoder,
        tokenizer=sd.tokenizer,
        unet=sd.unet,
        scheduler=scheduler,
        safety_checker=None,
        requires_safety_checker=False,
        dtype=torch.float32,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_pixels(sd, scheduler, seed: int, **kwargs) -> torch.Tensor:
    """StableDiffusionPipeline's image in [0, 1], from the same parts as the lesson's loop."""
    pipe = same_parts_pipeline(sd, scheduler)
    return pipe(PROMPT, generator=torch.Generator().manual_seed(seed), output_type="pt", **SETTINGS, **kwargs).images


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_notebook_loop_matches_pipeline(sd, loop, name):
    ours = loop["sd_generate"](PROMPT, make_scheduler(sd, name), generator=torch.Generator().manual_seed(3), **SETTINGS)
    reference = pipeline_pixels(sd, make_scheduler(sd, name), seed=3)
    assert ours.shape == reference.shape == (1, 3, 64, 64)
    assert (ours - reference).abs().max().item() <= 1e-4


def test_notebook_loop_matches_pipeline_with_negative_prompt(sd, loop):
    negative = "blurry, low quality"
    ours = loop["sd_generate"](
        PROMPT,
        make_scheduler(sd, "Euler"),
        generator=torch.Generator().manual_seed(5),
        negative_prompt=negative,
        **SETTINGS,
    )
    reference = pipeline_pixels(sd, make_scheduler(sd, "Euler"), seed=5, negative_prompt=negative)
    assert (ours - reference).abs().max().item() <= 1e-4


def test_the_sampling_benchmark_runs_the_lessons_loop(sd, loop):
    """bench/sampling.py times a copy of the notebook's sd_generate: the two give the same pixels."""
    import sys

    sys.path.insert(0, str(NOTEBOOK.parents[1] / "bench"))
    import sampling

    generator = torch.Generator().manual_seed(4)
    ours = loop["sd_generate"](PROMPT, make_scheduler(sd, "Euler"), generator=generator, **SETTINGS)
    pipe = same_parts_pipeline(sd, make_scheduler(sd, "Euler"))
    steps, guidance, height, width = (SETTINGS[k] for k in ("num_inference_steps", "guidance_scale", "height", "width"))
    bench = sampling.course_loop(pipe, PROMPT, steps, guidance, height, width, torch.Generator().manual_seed(4))
    assert ours.shape == bench.shape and (ours - bench).abs().max().item() <= 1e-4


def test_euler_needs_both_scaling_calls(sd):
    """Euler is the scheduler where init_noise_sigma and scale_model_input are not no-ops
    (so the parity means something)."""
    euler, unipc = make_scheduler(sd, "Euler"), make_scheduler(sd, "UniPC")
    for scheduler in (euler, unipc):
        scheduler.set_timesteps(3)
    sample = torch.ones(1, 4, 8, 8)
    assert euler.init_noise_sigma > 2.0
    assert euler.scale_model_input(sample, euler.timesteps[0]).max().item() < 0.5
    assert unipc.init_noise_sigma == 1.0
    assert torch.equal(unipc.scale_model_input(sample, unipc.timesteps[0]), sample)


def test_parity_check_catches_a_missing_scale_model_input(sd, loop):
    scheduler = make_scheduler(sd, "Euler")
    scheduler.scale_model_input = lambda sample, timestep: sample  # the 2022 bug
    broken = loop["sd_generate"](PROMPT, scheduler, generator=torch.Generator().manual_seed(3), **SETTINGS)
    reference = pipeline_pixels(sd, make_scheduler(sd, "Euler"), seed=3)
    assert (broken - reference).abs().max().item() > 1e-2


def test_schedulers_made_from_the_shipped_config_get_sds_settings(sd):
    """The notebook swaps schedulers with .from_config(scheduler.config): DDIM and PNDM must get SD 1.x's settings
    (no clipping of the latents, PNDM without its Runge-Kutta warm-up), not their own defaults, which draw no
    picture on a latent model (DDIM's clip_sample=True) or make 9 extra UNet calls (PNDM)."""
    ddim, pndm = make_scheduler(sd, "DDIM"), make_scheduler(sd, "PNDM")
    assert ddim.config.clip_sample is False and ddim.config.set_alpha_to_one is False
    assert pndm.config.skip_prk_steps is True
    pndm.set_timesteps(20)
    assert len(pndm.timesteps) == 21  # one warm-up call more, as the notebook's table says


def notebook_old_loop(loop) -> Callable:
    """The notebook's own 2022 loop (no init_noise_sigma, no scale_model_input), with the stand-in's parts."""
    source = notebook_cell(NOTEBOOK, "def old_tutorial_loop(")
    definitions = source[source.index("@torch.no_grad()") : source.index("\n\ndef old_loop_gap")]
    namespace = dict(loop, torch=torch, randn_tensor=randn_tensor, prompt=PROMPT, seed=1145, guidance_scale=7.5)
    namespace.update(
        height=64,
        width=64,
        vae_scale_factor=8,
        course=SimpleNamespace(generator=lambda s: torch.Generator().manual_seed(s)),
    )
    exec(compile(definitions, str(NOTEBOOK), "exec"), namespace)
    return namespace["old_tutorial_loop"]


def test_2022_loop_breaks_euler_at_5_steps_and_not_unipc(sd, loop):
    """What the notebook's section 8 says of its smoke-mode figure: at 5 steps the 2022 loop's Euler image is far
    from the pipeline's (measured: mean 0.245 of the pixel range), its UniPC image is the pipeline's."""
    old = notebook_old_loop(loop)
    assert SETTINGS["num_inference_steps"] == 5
    for name, low, high in (("Euler", 0.15, 1.0), ("UniPC", 0.0, 1e-5)):
        reference = pipeline_pixels(sd, make_scheduler(sd, name), seed=1145)
        gap = (old(make_scheduler(sd, name), 5) - reference).abs().mean().item()
        assert low <= gap <= high, (name, gap)


def test_encode_prompt_is_uncond_first(sd, loop):
    embeddings = loop["encode_prompt"](PROMPT)
    assert embeddings.shape == (2, 77, sd.unet.config.cross_attention_dim)
    assert torch.equal(embeddings[:1], encode_texts(sd.tokenizer, sd.text_encoder, [""]))
    assert torch.equal(embeddings[1:], encode_texts(sd.tokenizer, sd.text_encoder, [PROMPT]))


# ---- exercise checks -------------------------------------------------------------------------------------------


def test_check_latent_shape(sd, capsys):
    kwargs = dict(unet=sd.unet, vae=sd.vae, height=96, width=64, batch_size=2)
    assert expected_latent_shape(sd.unet, sd.vae, 96, 64, 2) == (2, 4, 12, 8)
    assert check_latent_shape((2, 4, 12, 8), **kwargs)
    assert check_latent_shape(torch.zeros(2, 4, 12, 8), **kwargs)
    assert "✅" in capsys.readouterr().out
    assert not check_latent_shape(None, **kwargs)
    assert "Not attempted" in capsys.readouterr().out
    wrong = {
        (4, 4, 12, 8): "doubled",
        (2, 3, 12, 8): "in_channels",
        (2, 4, 96, 64): "scale factor",
        (2, 4, 8, 12): "swapped",
        (2, 4, 12): "4 dimensions",
        (1, 4, 12, 8): "batch should be 2",
        (2, 4, 10, 8): "(12, 8)",
    }
    for answer, hint in wrong.items():
        assert not check_latent_shape(answer, **kwargs)
        out = capsys.readouterr().out
        assert "❌" in out and hint in out, (answer, out)
    assert not check_latent_shape("2, 4, 12, 8", **kwargs)
    assert "tuple of 4 ints" in capsys.readouterr().out


def test_check_text_embeddings(sd, capsys):
    tokenizer, encoder = sd.tokenizer, sd.text_encoder
    prompts, negatives = ["a red panda", "a lighthouse"], ["blurry", "people"]
    cond, uncond = encode_texts(tokenizer, encoder, prompts), encode_texts(tokenizer, encoder, negatives)
    right = torch.cat([uncond, cond])
    assert check_text_embeddings(right, tokenizer, encoder, prompts, negatives)
    assert "✅" in capsys.readouterr().out
    # one prompt at a time, as a learner might do it, is just as right
    one_by_one = torch.cat([encode_texts(tokenizer, encoder, [t]) for t in negatives + prompts])
    assert check_text_embeddings(one_by_one, tokenizer, encoder, prompts, negatives)
    capsys.readouterr()
    assert not check_text_embeddings(None, tokenizer, encoder, prompts, negatives)
    assert "Not attempted" in capsys.readouterr().out
    short = encoder(tokenizer(negatives + prompts, padding="longest", return_tensors="pt").input_ids)[0].detach()
    empty = encode_texts(tokenizer, encoder, ["", ""])
    wrong = {
        "swapped": torch.cat([cond, uncond]),
        "interleaved": torch.stack([uncond, cond], dim=1).flatten(0, 1),
        "empty prompt": torch.cat([empty, cond]),
        "tokens per row": short,
        "rows instead of 4": cond,
        "3 dimensions": right[:, 0],
        "values differ": right + 0.5,
    }
    for hint, answer in wrong.items():
        assert not check_text_embeddings(answer, tokenizer, encoder, prompts, negatives)
        out = capsys.readouterr().out
        assert "❌" in out and hint in out, (hint, out)
    assert not check_text_embeddings([[0.0]], tokenizer, encoder, prompts, negatives)
    assert "torch.Tensor" in capsys.readouterr().out
    # without negative prompts the unconditional half is the empty prompt
    assert check_text_embeddings(torch.cat([empty[:1], cond[:1]]), tokenizer, encoder, prompts[0])


def test_check_cfg(capsys):
    assert check_cfg(cfg_reference)
    assert check_cfg(lambda u, t, s: u + s * t - s * u)  # same formula, rearranged
    assert "✅" in capsys.readouterr().out
    assert not check_cfg(None)
    assert "Not attempted" in capsys.readouterr().out
    assert not check_cfg(lambda u, t, s: None)
    assert "returns None" in capsys.readouterr().out
    wrong = {
        "swapped": lambda u, t, s: t + s * (u - t),
        "missing in front": lambda u, t, s: s * (t - u),
        "multiplies the text": lambda u, t, s: u + s * t,
        "differs by up to": lambda u, t, s: u + 7.5 * (t - u),  # ignores the scale argument
        "shape": lambda u, t, s: torch.cat([u, t]),
        "raised ZeroDivisionError": lambda u, t, s: 1 / 0,
    }
    for hint, fn in wrong.items():
        assert not check_cfg(fn)
        out = capsys.readouterr().out
        assert "❌" in out and hint in out, (hint, out)


# ---- the notebook itself ---------------------------------------------------------------------------------------


def test_notebook_writes_out_what_it_teaches():
    """(test_hygiene.py checks every lesson for outputs, outdated APIs and tokens.)"""
    code = notebook_code(NOTEBOOK)
    assert cell_sources(NOTEBOOK, None)[1].startswith("import course_utils\n\ncourse = course_utils.setup()")
    for needed in (
        "init_noise_sigma",
        "scale_model_input",
        "vae.config.scaling_factor",
        "randn_tensor",
        'course.model("sd14")',
        "subfolder=",
        "dtype=course.dtype",
        "set_progress_bar_config(disable=True)",
        "safety_checker=None",
        ".from_config(scheduler.config",
    ):
        assert needed in code, needed
