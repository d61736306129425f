"""emoji-sd3, the course's flow-matching model in the StableDiffusion3Pipeline layout: smoke mode and the offline
fallback use it for SD 3.5 and FLUX.1, it fits the size budget, it draws the asked-for emoji with the plain call, and
the script's sd3 phase resumes exactly and exports a folder that loads."""

from __future__ import annotations

import inspect

import pytest
import torch
from test_emoji_models import run_phase

from course_utils import emoji_quality as q
from course_utils.folders import load_emoji_tensors
from course_utils.models.emoji import models_dir, shipped_model
from course_utils.models.registry import MODELS
from course_utils.models.resolve import resolve
from course_utils.training import runs

BUDGET_MB = 45  # all of data/models together

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread for these tiny models


@pytest.mark.parametrize("name", ["sd35-medium", "flux-schnell"])
def test_smoke_mode_and_the_offline_fallback_use_emoji_sd3(name, tmp_path):
    folder = shipped_model("emoji-sd3")
    smoke = resolve(MODELS[name], smoke=True, hub_ok=False, standin_root=tmp_path)
    assert smoke.path == folder and smoke.source == "course model"
    with pytest.warns(UserWarning, match="emoji-sd3"):
        full = resolve(MODELS[name], smoke=False, hub_ok=False, standin_root=tmp_path)
    assert full.path == folder and "hub unreachable" in str(full)
    assert not any(tmp_path.iterdir()), "no random stand-in is built for a diffusion transformer"


def test_all_shipped_models_fit_the_budget():
    folder = shipped_model("emoji-sd3")
    total = sum(f.stat().st_size for f in models_dir().rglob("*") if f.is_file())
    assert total / 1e6 <= BUDGET_MB, f"data/models takes {total / 1e6:.1f} MB, budget {BUDGET_MB} MB"
    from safetensors import safe_open

    for weights in folder.rglob("*.safetensors"):
        with safe_open(weights, "pt") as f:
            assert all(f.get_slice(k).get_dtype() == "F16" for k in f.keys()), f"{weights} is not fp16"
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "license:" in card and "train_emoji_models.py sd3" in card


def test_the_silent_t5_gives_the_pipelines_zero_rows():
    from diffusers import StableDiffusion3Pipeline

    folder = shipped_model("emoji-sd3")
    pipe = StableDiffusion3Pipeline.from_pretrained(folder)
    without = StableDiffusion3Pipeline.from_pretrained(folder, text_encoder_3=None, tokenizer_3=None)
    ours, *_ = pipe.encode_prompt("red apple", None, None, do_classifier_free_guidance=False)
    theirs, *_ = without.encode_prompt("red apple", None, None, do_classifier_free_guidance=False)
    assert ours.shape == (1, 77 + 256, 128) and torch.equal(ours, theirs)
    assert ours[:, :77].abs().max() > 0.1 and not ours[:, 77:].any()


@pytest.mark.slow
def test_plain_call_at_the_pipeline_defaults_finds_the_intended_emoji():
    """The folder's own scheduler, 28 steps (the default) and guidance 7 (the default): bench/emoji_quality.py
    measures 50 captions; this checks 20 others with a looser bar."""
    from diffusers import DiffusionPipeline

    images, captions = load_emoji_tensors()
    pipe = DiffusionPipeline.from_pretrained(shipped_model("emoji-sd3"))
    pipe.set_progress_bar_config(disable=True)
    defaults = inspect.signature(pipe.__call__).parameters
    steps, guidance = defaults["num_inference_steps"].default, defaults["guidance_scale"].default
    assert (steps, guidance) == (28, 7.0), "the pipeline's defaults changed: measure again at the new ones"
    indices = q.pick_captions(20, len(captions), seed=2)
    result = q.text_to_image_retrieval(pipe, images, captions, indices, steps=steps, guidance_scale=guidance)
    assert result.top10 >= 0.7, f"emoji-sd3 at its defaults: {result}"


@pytest.mark.slow
def test_sd3_phase_resumes_exactly_and_exports_a_plain_folder(tmp_path):
    from diffusers import DiffusionPipeline

    straight, split = tmp_path / "straight", tmp_path / "split"
    quick = ("--images", "32", "--save_every", "1")
    run_phase("sd3", "--steps", "4", "--work_dir", str(straight), *quick)
    run_phase("sd3", "--steps", "2", "--work_dir", str(split), *quick)
    assert "resumed at step 2" in run_phase("sd3", "--steps", "4", "--work_dir", str(split), *quick)
    a, b = (torch.load(runs.checkpoints(w / "sd3-run")[-1] / "state.pt", weights_only=False) for w in (straight, split))
    assert all(torch.equal(a["transformer"][k], b["transformer"][k]) for k in a["transformer"])
    assert all(torch.equal(x, y) for x, y in zip(a["extra"]["shadow_params"], b["extra"]["shadow_params"]))
    run_phase("export-sd3", "--work_dir", str(split), "--models_dir", str(tmp_path / "models"))
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "models" / "emoji-sd3")
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "StableDiffusion3Pipeline"
    assert pipe("red apple", num_inference_steps=2, output_type="pt").images.shape == (1, 3, 64, 64)
    folder = tmp_path / "models" / "emoji-sd3"
    text_1, text_2 = (folder / f / "model.safetensors" for f in ("text_encoder", "text_encoder_2"))
    assert text_1.read_bytes() == text_2.read_bytes(), "the two CLIP encoders are one file twice (git stores it once)"
