"""Lesson 01 (the denoising loop): the course's manual DDPM/DDIM loops give the pipelines' pixels, the exercise checks
accept right answers and reject wrong ones with the right hint, and the schedule plot draws what it says."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402
from diffusers.utils.torch_utils import randn_tensor  # noqa: E402
from notebook_code import notebook_cell, notebook_code, notebook_definitions, notebook_path  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from course_utils.exercises.lesson01_denoising import check_ddim_step, check_ddpm_step, check_noise_overtakes_signal  # noqa: E402
from course_utils.images import tensor_to_pil  # noqa: E402
from course_utils.noise_schedule import plot_noise_schedule  # noqa: E402

NOTEBOOK = notebook_path("01_denoising_loop.ipynb")
STEPS = 20  # what course.steps(50, smoke=20) gives in smoke mode
SEED = 0
FP32_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def folder(emoji_ddpm_folder) -> Path:
    """What course.model("ddpm-cat") gives in smoke mode: the course's trained emoji DDPM, in the ddpm-cat layout."""
    return emoji_ddpm_folder


@pytest.fixture(scope="module")
def unet(folder) -> UNet2DModel:
    return UNet2DModel.from_pretrained(folder).eval()


# ----- the notebook's own loop cells, run on the trained emoji DDPM ----------------------------------------------


def notebook_to_pil():
    """The lesson's `to_pil` function, defined by its own cell."""
    return notebook_definitions(NOTEBOOK, "def to_pil(", {"to_pil"}, torch=torch, Image=Image)["to_pil"]


def manual_loop(
    unet: UNet2DModel, scheduler, steps: int, seed: int, edit: tuple[str, str] | None = None
) -> torch.Tensor:
    """Run the lesson's DDPM cell (or its DDIM cell, for a DDIMScheduler) with `unet`, `scheduler` and `steps` as its
    globals; `edit` replaces a piece of the cell's source first (to show that the parity check can fail). Pixels in
    [0, 1]."""
    size = unet.config.sample_size
    course = SimpleNamespace(device="cpu", generator=lambda: torch.Generator().manual_seed(seed))
    namespace = dict(
        course=course, unet=unet, torch=torch, randn_tensor=randn_tensor, shape=(1, unet.config.in_channels, size, size)
    )
    if isinstance(scheduler, DDIMScheduler):
        scheduler.set_timesteps(steps)  # the cell before the loop does this
        namespace.update(
            ddim=scheduler, DDIM_STEPS=steps, sync=lambda: None, time=time, tqdm=tqdm, to_pil=notebook_to_pil()
        )
        marker = 'desc="DDIM"'
    else:
        namespace.update(scheduler=scheduler, DDPM_STEPS=steps)
        marker = 'desc="DDPM"'
    source = notebook_cell(NOTEBOOK, marker)
    if edit is not None:
        assert edit[0] in source, edit
        source = source.replace(*edit)
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(source, str(NOTEBOOK), "exec"), namespace)
    return (namespace["sample"] / 2 + 0.5).clamp(0, 1)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """The lesson's picture conversion: [0, 1] (B, C, H, W) -> uint8 (B, H, W, C)."""
    return (pixels.float().cpu().permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def test_ddpm_loop_matches_ddpm_pipeline(folder, unet):
    ours = manual_loop(unet, DDPMScheduler.from_pretrained(folder), STEPS, SEED)
    pipe = DDPMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(generator=torch.Generator().manual_seed(SEED), num_inference_steps=STEPS, output_type="np").images
    size = unet.config.sample_size
    assert ours.shape == (1, 3, size, size) and theirs.shape == (1, size, size, 3)
    assert max_difference(ours.permute(0, 2, 3, 1), torch.from_numpy(theirs)) <= FP32_TOLERANCE
    # the lesson's tensor -> picture conversion gives the pipeline's PIL image (its output_type="pil" path), exactly
    pil = pipe.numpy_to_pil(theirs)[0]
    assert np.array_equal(to_uint8(ours)[0], np.asarray(pil))


def test_the_lessons_to_pil_is_tensor_to_pil():
    """The lesson's to_pil, written out, gives the same pixels as course_utils.images.tensor_to_pil
    (which `show` uses)."""
    batch = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2  # also outside [-1, 1]
    ours, theirs = notebook_to_pil()(batch), tensor_to_pil(batch)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(ours, theirs)) and len(ours) == 3


def test_ddim_loop_matches_ddim_pipeline(folder, unet):
    ddim = DDIMScheduler.from_config(DDPMScheduler.from_pretrained(folder).config)
    ours = manual_loop(unet, ddim, STEPS, SEED)
    pipe = DDIMPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    theirs = pipe(
        generator=torch.Generator().manual_seed(SEED), num_inference_steps=STEPS, eta=0.0, output_type="pt"
    ).images
    assert max_difference(ours, theirs) <= FP32_TOLERANCE


def test_parity_check_can_fail(folder, unet):
    """The comparison is sensitive: forgetting the generator in step(), or another seed, breaks parity by far."""
    scheduler = DDPMScheduler.from_pretrained(folder)
    reference = manual_loop(unet, scheduler, STEPS, SEED)
    torch.manual_seed(123)
    step = "out = scheduler.step(noise_pred, t, sample, generator=generator)"
    forgot = (step, step.replace("generator=generator", "generator=None"))  # step() then uses torch's global RNG
    assert max_difference(manual_loop(unet, scheduler, STEPS, SEED, edit=forgot), reference) > 1e-2
    assert max_difference(manual_loop(unet, scheduler, STEPS, SEED + 1), reference) > 1e-2


def test_bfloat16_parity_and_pil_pitfall(folder):
    """Full mode's half-precision path: parity within 2 * eps(bf16), and the PIL-output failure the lesson explains."""
    steps = 2  # bf16 convolutions are slow on most CPUs; two steps still draw noise inside step()
    unet = UNet2DModel.from_pretrained(folder, dtype=torch.bfloat16).eval()
    ours = manual_loop(unet, DDPMScheduler.from_pretrained(folder), steps, SEED)
    pipe = DDPMPipeline.from_pretrained(folder, dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(generator=torch.Generator().manual_seed(SEED), num_inference_steps=steps, output_type="pt").images
    assert theirs.dtype == torch.bfloat16
    assert max_difference(ours, theirs) <= 2 * torch.finfo(torch.bfloat16).eps
    assert to_uint8(ours).dtype == np.uint8  # .float() first: NumPy has no bfloat16
    with pytest.raises(TypeError, match="BFloat16"):
        pipe(generator=torch.Generator().manual_seed(SEED), num_inference_steps=1).images


def test_notebook_writes_the_loops_and_asserts_parity():
    """The loops and the parity asserts live in the notebook itself, not in a helper."""
    code = notebook_code(NOTEBOOK)
    for needed in (
        'course.model("ddpm-cat")',
        "randn_tensor(shape, generator=generator",
        "unet(sample, t, return_dict=False)[0]",
        "scheduler.step(noise_pred, t, sample, generator=generator)",
        "ddim.step(noise_pred, t, sample, eta=0.0, generator=generator)",
        "DDPMPipeline.from_pretrained(folder",
        "DDIMPipeline.from_pretrained(folder",
        "DDIMScheduler.from_config(scheduler.config)",
        "pred_original_sample",
        "course.steps(",
        "DTYPE = torch.float32",
        "assert difference <= tolerance",
    ):
        assert needed in code, f"notebook 01 no longer contains {needed!r}"


# ----- exercise 2: one DDPM step ------------------------------------------------------------------------------------


def ddpm_step(model_output, timestep, sample, scheduler, noise, *, clip=True, add_noise=True, beta_from_table=False):
    """A correct DDPM step (defaults), and the wrong variants the check should recognise."""
    prev_t = scheduler.previous_timestep(timestep)
    abar_t = scheduler.alphas_cumprod[timestep]
    abar_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)
    beta = scheduler.betas[timestep] if beta_from_table else 1 - abar_t / abar_prev
    x0 = (sample - (1 - abar_t).sqrt() * model_output) / abar_t.sqrt()
    if clip:
        x0 = x0.clamp(-1, 1)
    mean = abar_prev.sqrt() * beta / (1 - abar_t) * x0 + (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar_t) * sample
    if timestep > 0 and add_noise:
        mean = mean + ((1 - abar_prev) / (1 - abar_t) * beta).sqrt() * noise
    return mean


def test_check_ddpm_step_accepts_a_correct_step(folder, capsys):
    scheduler = DDPMScheduler.from_pretrained(folder)
    assert check_ddpm_step(ddpm_step, scheduler) is True
    assert "✅" in capsys.readouterr().out
    assert len(scheduler.timesteps) == 1000, "the check must not call set_timesteps on the learner's scheduler"
    assert check_ddpm_step(ddpm_step) is True  # default: ddpm-cat's scheduler config


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda *a: ddpm_step(*a, add_noise=False), "no fresh noise"),
        (lambda *a: ddpm_step(*a, clip=False), "not clipped"),
        (lambda *a: ddpm_step(*a, beta_from_table=True), "betas[t]"),
        (lambda m, t, x, s, n: ddpm_step(m, t, x, s, n * 2), "Compare term by term"),
    ],
)
def test_check_ddpm_step_rejects_wrong_steps_with_a_hint(wrong, hint, capsys):
    assert check_ddpm_step(wrong) is False
    out = capsys.readouterr().out
    assert "❌" in out and "differs from diffusers by up to" in out and hint in out


def test_check_ddpm_step_handles_blank_and_broken_answers(capsys):
    assert check_ddpm_step(None) is False
    assert check_ddpm_step(lambda *a: None) is False
    assert capsys.readouterr().out.count("Not attempted") == 2
    assert check_ddpm_step(lambda m, t, x, s, n: s.step(m, t, x).prev_sample) is False
    assert "switched off" in capsys.readouterr().out
    assert check_ddpm_step(lambda *a: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert check_ddpm_step(lambda m, t, x, s, n: x[0]) is False
    assert "shape" in capsys.readouterr().out


# ----- exercise 3: one DDIM step ------------------------------------------------------------------------------------


def ddim_step(model_output, timestep, sample, scheduler, *, jump=None, negative_index=False, clip=True):
    """A correct deterministic DDIM step (defaults), and wrong variants."""
    jump = jump or scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    prev_t = timestep - jump
    abar_t = scheduler.alphas_cumprod[timestep]
    abar_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 or negative_index else scheduler.final_alpha_cumprod
    x0 = (sample - (1 - abar_t).sqrt() * model_output) / abar_t.sqrt()
    if clip:
        x0 = x0.clamp(-1, 1)
    return abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * model_output


def test_check_ddim_step_accepts_a_correct_step(folder, capsys):
    assert check_ddim_step(ddim_step, DDPMScheduler.from_pretrained(folder)) is True
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda *a: ddim_step(*a, jump=1), "t − 1"),
        (lambda *a: ddim_step(*a, negative_index=True), "END of the table"),
        (lambda *a: ddim_step(*a, clip=False), "not clipped"),
    ],
)
def test_check_ddim_step_rejects_wrong_steps_with_a_hint(wrong, hint, capsys):
    assert check_ddim_step(wrong) is False
    out = capsys.readouterr().out
    assert "❌" in out and hint in out


def test_check_ddim_step_blank(capsys):
    assert check_ddim_step(None) is False and check_ddim_step(lambda *a: None) is False
    assert capsys.readouterr().out.count("Not attempted") == 2


# ----- exercise 1: reading the schedule -----------------------------------------------------------------------------


def test_check_noise_overtakes_signal(folder, capsys):
    scheduler = DDPMScheduler.from_pretrained(folder)
    first = int(np.argmax(scheduler.alphas_cumprod.numpy() < 0.5))  # noise > signal  <=>  ᾱ < 1/2
    assert 0 < first < 999
    assert check_noise_overtakes_signal(first, scheduler) is True
    assert check_noise_overtakes_signal(torch.tensor(first), scheduler) is True
    for wrong in (first - 1, first + 1, 500, 5000, "soon"):
        assert check_noise_overtakes_signal(wrong, scheduler) is False
    assert check_noise_overtakes_signal(None) is False
    out = capsys.readouterr().out
    assert out.count("✅") == 2 and out.count("❌") == 5 and "Not attempted" in out


# ----- the schedule plot --------------------------------------------------------------------------------------------


def test_plot_noise_schedule_draws_both_curves_and_tick_rows():
    abar = DDPMScheduler().alphas_cumprod
    signal, noise = abar.sqrt(), (1 - abar).sqrt()
    plot_noise_schedule(signal, noise, used_timesteps={"DDPM": torch.arange(999, -1, -4), "DDIM": [980, 500, 0]})
    fig = plt.gcf()
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4
    assert np.allclose(lines[0].get_ydata(), signal.numpy()) and np.allclose(lines[1].get_ydata(), noise.numpy())
    assert len(lines[2].get_xdata()) == 250 and list(lines[3].get_xdata()) == [980, 500, 0]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "DDPM: 250 steps" in labels and "DDIM: 3 steps" in labels
    plt.close(fig)
    plot_noise_schedule(signal, noise, used_timesteps=[999, 0])  # a plain sequence works too
    fig = plt.gcf()
    assert len(fig.axes[0].get_lines()) == 3
    plt.close(fig)


def test_plot_noise_schedule_rejects_bad_input():
    curve = torch.linspace(1, 0, 10)
    with pytest.raises(ValueError, match="signal has 10 values but noise has 9"):
        plot_noise_schedule(curve, curve[:9])
    with pytest.raises(ValueError, match=r"must lie in 0\.\.9"):
        plot_noise_schedule(curve, 1 - curve, used_timesteps=[10])
    with pytest.raises(ValueError, match="noise: expected a 1-D"):
        plot_noise_schedule(curve, torch.ones(2, 5))
    plt.close("all")
