"""The course's trained emoji models: smoke mode loads them, they are within the size budget, their quality holds (with
looser bars than bench/emoji_quality.py reports), and scripts/train_emoji_models.py reproduces and resumes them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_utils import emoji_quality as q
from course_utils.folders import emoji_metadata, load_emoji, load_emoji_tensors
from course_utils.models.emoji import FOR_KIND
from course_utils.models.registry import MODELS
from course_utils.models.resolve import resolve
from course_utils.training import runs

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MB = 25


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread for these tiny models


@pytest.fixture(scope="module")
def emoji():
    return load_emoji_tensors()


# ----- smoke mode uses them -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sd15", "sd14", "dreamlike-photoreal", "sd15-inpaint", "ddpm-cat"])
def test_smoke_mode_resolves_to_the_trained_model(name, emoji_sd_folder, emoji_ddpm_folder, tmp_path):
    found = resolve(MODELS[name], smoke=True, hub_ok=False, standin_root=tmp_path)
    expected = emoji_ddpm_folder if MODELS[name].kind == "ddpm" else emoji_sd_folder
    assert found.path == expected and found.source == "course model"
    assert MODELS[name].repo_id in str(found) and "trained on the shipped emoji" in str(found)
    assert not any(tmp_path.iterdir()), "no random stand-in should be built when the trained model is there"


def test_every_registry_kind_has_a_trained_model():
    assert {spec.kind for spec in MODELS.values()} <= set(FOR_KIND)


def test_model_folders_are_within_budget(emoji_sd_folder, emoji_ddpm_folder):
    total = sum(
        f.stat().st_size for folder in (emoji_sd_folder, emoji_ddpm_folder) for f in folder.rglob("*") if f.is_file()
    )
    assert total / 1e6 <= BUDGET_MB, f"shipped models take {total / 1e6:.1f} MB, budget {BUDGET_MB} MB"
    for weights in list(emoji_sd_folder.rglob("*.safetensors")) + list(emoji_ddpm_folder.rglob("*.safetensors")):
        from safetensors import safe_open

        with safe_open(weights, "pt") as f:
            assert all(f.get_slice(k).get_dtype() == "F16" for k in f.keys()), f"{weights} is not fp16"
    for card in (emoji_sd_folder / "README.md", emoji_ddpm_folder / "README.md"):
        text = card.read_text()
        assert text.startswith("---\n") and "license:" in text and "train_emoji_models.py" in text


# ----- quality, with looser bars than the benchmark ------------------------------------------------------------------
def test_text_to_image_finds_the_intended_emoji(emoji_sd_folder, emoji):
    from diffusers import StableDiffusionPipeline, UniPCMultistepScheduler

    images, captions = emoji
    pipe = StableDiffusionPipeline.from_pretrained(emoji_sd_folder, dtype=torch.float32, safety_checker=None)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    result = q.text_to_image_retrieval(pipe, images, captions, q.pick_captions(20, len(captions), seed=1), steps=15)
    assert result.top10 >= 0.3, f"emoji-sd: {result}"  # chance: 0.5%


def test_vae_reconstructs(emoji_sd_folder, emoji):
    from diffusers import AutoencoderKL

    from course_utils.text_to_image import psnr

    images = emoji[0][::10]
    vae = AutoencoderKL.from_pretrained(emoji_sd_folder, subfolder="vae", dtype=torch.float32)
    with torch.no_grad():
        recon = vae.decode(vae.encode(images).latent_dist.mean).sample
    assert psnr(recon, images) >= 22.0
    assert 0.2 < vae.config.scaling_factor < 5.0


def test_ddpm_samples_are_nearer_to_the_faces_than_random_weights(emoji_ddpm_folder, emoji):
    """emoji-ddpm is trained on the yellow face emoji: its samples are nearer to those faces than a random-weight
    model's."""
    from diffusers import DDIMPipeline, UNet2DModel

    from course_utils.training.datasets import is_yellow_face

    _, rows = emoji_metadata()
    faces = emoji[0][[i for i, row in enumerate(rows) if is_yellow_face(row)]]
    trained = DDIMPipeline.from_pretrained(emoji_ddpm_folder, dtype=torch.float32)
    size = trained.unet.config.sample_size
    references = torch.nn.functional.interpolate((faces + 1) / 2, size=(size, size), mode="area")
    torch.manual_seed(0)
    distances = {}
    for name, unet in (("trained", trained.unet), ("random", UNet2DModel.from_config(trained.unet.config))):
        pipe = DDIMPipeline(unet=unet, scheduler=trained.scheduler)
        pipe.set_progress_bar_config(disable=True)
        samples = pipe(
            batch_size=8, num_inference_steps=20, generator=torch.Generator().manual_seed(0), output_type="np"
        ).images
        distances[name] = q.nearest_distance(torch.from_numpy(samples).permute(0, 3, 1, 2), references).median()
    assert distances["trained"] < 0.8 * distances["random"], distances  # bench: 0.245 vs 0.413 (64 samples, 50 steps)


# ----- the measuring parts -------------------------------------------------------------------------------------------
def test_retrieval_ranks_count_nearer_references():
    references = torch.stack([torch.full((3, 16, 16), v) for v in (0.0, 0.3, 0.6, 1.0)])
    generated = torch.stack([torch.full((3, 16, 16), 0.55), torch.full((3, 16, 16), 0.05)])
    ranks = q.retrieval_ranks(generated, references, torch.tensor([2, 3]))
    assert ranks.tolist() == [0, 3]  # 0.55 is nearest to 0.6; 0.05 has three references nearer than 1.0
    summary = q.summarize(ranks, references=4)
    assert (summary.top1, summary.top10, summary.count) == (0.5, 1.0, 2)


def test_nearest_distance_is_rms_in_pixel_units():
    references = torch.zeros(2, 3, 16, 16)
    references[1] += 1.0
    assert q.nearest_distance(torch.full((1, 3, 16, 16), 0.25), references).item() == pytest.approx(0.25)


def export_script():
    """scripts/export_emoji_models.py, imported by its path (scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("export_emoji_models", ROOT / "scripts" / "export_emoji_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_zero_unused_rows_keeps_the_caption_tokens():
    from course_utils.models.standins import clip_tokenizer
    from course_utils.text_to_image import make_text_encoder

    export = export_script()
    tokenizer, encoder = clip_tokenizer(), make_text_encoder()
    used = export.used_token_ids(tokenizer, ["red apple"])
    assert set(tokenizer("red apple").input_ids) <= set(used.tolist())
    zeroed = export.zero_unused_rows(encoder, used)
    weight = encoder.get_input_embeddings().weight
    assert zeroed == weight.shape[0] - len(used)
    assert weight[used].abs().sum() > 0 and weight.abs().sum(dim=1).count_nonzero() == len(used)


def test_load_emoji_by_name_and_a_helpful_error():
    assert load_emoji("red apple", 32).size == (32, 32)
    with pytest.raises(KeyError, match="Did you mean 'red apple'"):
        load_emoji("red aple")


# ----- the training script reproduces and resumes ---------------------------------------------------------------------
def run_phase(*args: str) -> str:
    """One phase of scripts/train_emoji_models.py in this process (a new process would spend ~8 s on imports); its
    printed output. `run_script` runs it as a learner does."""
    import contextlib
    import importlib.util
    import io

    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))  # as when it runs as a script: export_emoji_models is beside it
    spec = importlib.util.spec_from_file_location("train_emoji_models", ROOT / "scripts" / "train_emoji_models.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out, threads = io.StringIO(), torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            script.main(list(args))
    finally:
        torch.set_num_threads(threads)
    return out.getvalue()


def run_script(*args: str) -> str:
    """scripts/train_emoji_models.py run as a program, from the repository root."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_emoji_models.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_training_script_runs_every_phase_and_resumes_exactly(tmp_path):
    import shutil

    from diffusers import StableDiffusionPipeline

    straight, split = tmp_path / "straight", tmp_path / "split"
    quick = ("--images", "64", "--save_every", "1")
    run_phase("vae", "--steps", "2", "--work_dir", str(straight), *quick)
    shutil.copytree(straight, split)
    run_phase("unet", "--steps", "4", "--work_dir", str(straight), *quick)
    run_phase("unet", "--steps", "2", "--work_dir", str(split), *quick)
    assert "resumed at step 2" in run_phase("unet", "--steps", "4", "--work_dir", str(split), *quick)
    a, b = (
        torch.load(runs.checkpoints(w / "unet-run")[-1] / "state.pt", weights_only=False) for w in (straight, split)
    )
    assert all(torch.equal(a["unet"][k], b["unet"][k]) for k in a["unet"]), "a resumed run must give the same weights"
    assert all(torch.equal(x, y) for x, y in zip(a["extra"]["shadow_params"], b["extra"]["shadow_params"]))
    run_phase("decoder", "--steps", "2", "--work_dir", str(split), *quick)
    run_script("export", "--work_dir", str(split), "--models_dir", str(tmp_path / "models"))  # as a program, once
    pipe = StableDiffusionPipeline.from_pretrained(
        tmp_path / "models" / "emoji-sd", dtype=torch.float32, safety_checker=None
    )
    pipe.set_progress_bar_config(disable=True)
    image = pipe("red apple", num_inference_steps=2, height=64, width=64, output_type="pt").images
    assert image.shape == (1, 3, 64, 64)
    latents = torch.load(split / "latents.pt")
    assert pipe.vae.config.scaling_factor == pytest.approx(latents["scaling_factor"], rel=1e-6)
    assert not (tmp_path / "models" / "emoji-sd" / "tokenizer" / "tokenizer.json").exists()
