"""Lesson 03 (AutoPipeline): photos, input checks, measuring, weight sharing, exercise checks,
notebook hygiene, and the notebook's image-to-image and inpainting loops written by hand, which must
give the pixels of StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline (4-channel
UNet: the trained emoji model; 9-channel UNet: the course's random inpainting stand-in). Parity
checks compare with what diffusers itself does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from notebook_code import cell_sources, missing_calls, notebook_cell, notebook_code, notebook_path, read_notebook
from PIL import Image

from course_utils import memory, photos
from course_utils.checks import pipeline_inputs as inputs
from course_utils.exercises import lesson03_autopipeline as ex
from course_utils.models.registry import model_spec
from course_utils.models.standins import get_standin

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = notebook_path("03_autopipeline.ipynb")


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    return get_standin(tmp_path_factory.mktemp("l03-standins"), model_spec("dreamlike-photoreal"), "tiny")


@pytest.fixture(scope="module")
def pipe_t2i(sd_folder):
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(
        sd_folder, dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe_i2i(pipe_t2i):
    from diffusers import AutoPipelineForImage2Image

    pipe = AutoPipelineForImage2Image.from_pipe(pipe_t2i)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ------------------------------------------------------------------------------------------- photos
def test_photos_are_shipped_small_and_licensed():
    files = sorted(photos.photos_dir().glob("*.jpg"))
    assert [f.stem for f in files] == ["astronaut", "cat", "coffee"] == photos.photo_names()
    assert sum(f.stat().st_size for f in files) < 1_000_000
    licences = (photos.photos_dir() / "LICENSES.md").read_text()
    for f in files:
        assert Image.open(f).size == (512, 512)
        line = next(line for line in licences.splitlines() if f"`{f.name}`" in line)
        assert re.search(r"CC0|[Pp]ublic domain", line) and "skimage.data." in line


def test_load_photo_by_name_and_path(tmp_path, monkeypatch):
    cat = photos.load_photo("cat", 64)
    assert cat.mode == "RGB" and cat.size == (64, 64)
    assert photos.load_photo(photos.photos_dir() / "coffee.jpg").size == (512, 512)
    monkeypatch.chdir(tmp_path)  # like a notebook running in notebooks/: a repo-relative path still works
    assert photos.photo_path("data/images/cat.jpg").resolve() == (ROOT / "data" / "images" / "cat.jpg").resolve()


def test_load_photo_crops_non_square_images(tmp_path):
    wide = Image.new("RGB", (300, 100), "red")
    wide.paste((0, 0, 255), (100, 0, 200, 100))  # blue centre third
    wide.save(tmp_path / "wide.png")
    photo = photos.load_photo(tmp_path / "wide.png", 64)
    assert photo.size == (64, 64) and photo.getpixel((32, 32)) == (0, 0, 255) and photo.getpixel((2, 32))[2] > 200


def test_missing_photo_names_argument_and_choices():
    with pytest.raises(FileNotFoundError) as err:
        photos.load_photo("cats")
    text = str(err.value)
    assert "image='cats'" in text and "Did you mean 'cat'" in text and "'astronaut', 'cat', 'coffee'" in text
    with pytest.raises(FileNotFoundError, match="init_image='nowhere/x.png'"):
        photos.photo_path("nowhere/x.png", argument="init_image")


def test_photo_size_must_be_multiple_of_8():
    with pytest.raises(ValueError, match="height=100 and width=100.*multiples of 8"):
        photos.load_photo("cat", 100)


# ------------------------------------------------------------------------------------- input checks
def test_prompt_checks():
    assert inputs.check_prompt("a cat") == "a cat"
    assert inputs.check_prompt(("a", "b")) == ["a", "b"]
    with pytest.raises(ValueError, match=r"prompt=\[\] is an empty list.*Pass e.g."):
        inputs.check_prompt([])
    with pytest.raises(TypeError, match=r"prompt\[1\] is int"):
        inputs.check_prompt(["a", 3])
    with pytest.raises(TypeError, match="expected a string or a list of strings"):
        inputs.check_prompt(None)


def test_diffusers_itself_fails_obscurely_on_an_empty_prompt_list(pipe_t2i):
    """The reason check_prompt exists: diffusers 0.42 raises an IndexError from deep inside."""
    with pytest.raises(IndexError):
        pipe_t2i([], num_inference_steps=1)


@pytest.mark.parametrize("strength", [0, -0.1, 1.5, float("nan")])
def test_strength_outside_range(strength):
    with pytest.raises(ValueError, match=r"expected a number in \(0, 1\].*Try strength=0.6"):
        inputs.check_strength(strength)


def test_strength_type_and_valid_values():
    with pytest.raises(TypeError, match="strength='0.5'"):
        inputs.check_strength("0.5")
    with pytest.raises(TypeError):
        inputs.check_strength(True)
    assert inputs.check_strength(1) == 1.0 and inputs.check_strength(0.3, 10) == 0.3


@pytest.mark.parametrize("steps,strength", [(3, 0.02), (25, 0.02), (3, 0.33), (50, 0.019)])
def test_strength_that_runs_zero_steps_and_its_fixes_work(steps, strength):
    with pytest.raises(
        ValueError, match="= 0 denoising steps: num_inference_steps x strength must be at least 1"
    ) as err:
        inputs.check_strength(strength, steps)
    assert "RuntimeError: cannot reshape tensor of 0 elements" in str(err.value)
    fixed_strength = float(re.search(r"strength to at least ([\d.]+)", str(err.value)).group(1))
    fixed_steps = int(re.search(r"num_inference_steps to at least (\d+)", str(err.value)).group(1))
    assert (
        inputs.steps_that_run(steps, fixed_strength) == 1 and inputs.steps_that_run(steps, fixed_strength - 0.01) == 0
    )
    assert inputs.steps_that_run(fixed_steps, strength) == 1 and inputs.steps_that_run(fixed_steps - 1, strength) == 0


def test_diffusers_itself_fails_obscurely_on_zero_steps(pipe_t2i):
    """The reason check_strength exists, and what its message says: in diffusers 0.42,
    strength=0.02 with 25 steps raises a RuntimeError that names neither argument with DDIM and
    Euler; PNDM, whose timestep list is one longer, runs one step at the lowest noise level
    without a word."""
    from diffusers import (
        AutoPipelineForImage2Image,
        DDIMScheduler,
        EulerDiscreteScheduler,
        PNDMScheduler,
    )

    image = Image.new("RGB", (64, 64), "red")
    for scheduler_class in (DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler):
        scheduler = scheduler_class.from_config(pipe_t2i.scheduler.config)
        pipe = AutoPipelineForImage2Image.from_pipe(pipe_t2i, scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)
        call = lambda: pipe("a", image=image, strength=0.02, num_inference_steps=25, output_type="np")  # noqa: E731
        if scheduler_class is PNDMScheduler:
            assert call().images.shape == (1, 64, 64, 3) and len(scheduler.timesteps) == 26
        else:
            with pytest.raises(RuntimeError, match="cannot reshape tensor of 0 elements"):
                call()
    with pytest.raises(ValueError, match="num_inference_steps x strength must be at least 1"):
        inputs.check_inputs("a", image=image, strength=0.02, num_inference_steps=25)  # caught before any model runs


@pytest.mark.parametrize("steps,strength", [(3, 0.4), (25, 0.6), (50, 0.4), (100, 0.29), (30, 1.0), (7, 0.99)])
def test_steps_that_run_matches_diffusers(steps, strength):
    from diffusers import PNDMScheduler, StableDiffusionImg2ImgPipeline

    scheduler = PNDMScheduler(skip_prk_steps=True, steps_offset=1)
    scheduler.set_timesteps(steps)
    _, ran = StableDiffusionImg2ImgPipeline.get_timesteps(SimpleNamespace(scheduler=scheduler), steps, strength, "cpu")
    assert inputs.steps_that_run(steps, strength) == ran


def test_size_must_be_multiple_of_8():
    with pytest.raises(ValueError, match="height=500.*Try height=504"):
        inputs.check_size(500, 512)
    assert inputs.check_size(64, 128) == (64, 128)


def test_mask_same_size_is_kept_as_black_and_white():
    image = Image.new("RGB", (64, 48))
    mask = inputs.match_mask(Image.new("RGB", (64, 48), "white"), image)
    assert mask.mode == "L" and mask.size == (64, 48)


def test_mask_of_other_size_is_resized_with_a_note(capsys):
    image = Image.new("RGB", (64, 64))
    small = Image.new("L", (32, 32), 0)
    small.paste(255, (8, 8, 24, 24))
    mask = inputs.match_mask(small, image)
    assert mask.size == (64, 64) and set(np.unique(np.asarray(mask))) == {0, 255}
    assert "mask_image was 32x32 px, image is 64x64 px" in capsys.readouterr().out


def test_mask_of_other_size_can_be_refused():
    with pytest.raises(ValueError, match="mask_image is 32x32 px but image is 64x64 px.*mask.resize"):
        inputs.match_mask(Image.new("L", (32, 32)), Image.new("RGB", (64, 64)), resize=False)
    with pytest.raises(TypeError, match="mask_image is a ndarray"):
        inputs.match_mask(np.zeros((64, 64)), Image.new("RGB", (64, 64)))


def test_check_inputs_catches_each_bad_argument():
    cat = photos.load_photo("cat", 64)
    with pytest.raises(FileNotFoundError, match="image='data/images/kitten.jpg'"):
        inputs.check_inputs("a", image="data/images/kitten.jpg")
    with pytest.raises(ValueError, match=r"prompt=\[\]"):
        inputs.check_inputs([], image=cat)
    with pytest.raises(ValueError, match="strength=1.5"):
        inputs.check_inputs("a", image=cat, strength=1.5)
    with pytest.raises(ValueError, match="0 denoising steps"):
        inputs.check_inputs("a", image=cat, strength=0.1, num_inference_steps=3)
    with pytest.raises(ValueError, match="width=60"):
        inputs.check_inputs("a", height=64, width=60)
    with pytest.raises(ValueError, match="give both or neither"):
        inputs.check_inputs("a", height=64)
    with pytest.raises(ValueError, match="mask_image was given without image"):
        inputs.check_inputs("a", mask_image=Image.new("L", (64, 64)))
    with pytest.raises(ValueError, match="num_inference_steps=0"):
        inputs.check_inputs("a", num_inference_steps=0)


def test_check_inputs_output_runs_in_the_real_pipelines(pipe_t2i, pipe_i2i):
    from diffusers import AutoPipelineForInpainting

    args = inputs.check_inputs("a cat", image="cat", strength=0.5, num_inference_steps=2)
    assert args["image"].size == (512, 512) and args["strength"] == 0.5
    args["image"] = args["image"].resize((64, 64))
    assert pipe_i2i(**args, output_type="np").images.shape == (1, 64, 64, 3)
    inpaint = AutoPipelineForInpainting.from_pipe(pipe_t2i)
    inpaint.set_progress_bar_config(disable=True)
    args = inputs.check_inputs(
        "a cat",
        image=args["image"],
        mask_image=Image.new("L", (32, 32), 255),
        num_inference_steps=1,
    )
    assert inpaint(**args, output_type="np").images.shape == (1, 64, 64, 3)


# ------------------------------------------------------------------------------ weights and sharing
def test_from_pipe_shares_every_weight(pipe_t2i, pipe_i2i):
    shared = memory.shared_components(pipe_t2i, pipe_i2i)
    assert set(shared) >= {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} and all(shared.values())
    assert (
        memory.unique_weight_bytes(pipe_t2i, pipe_i2i)
        == memory.unique_weight_bytes(pipe_t2i)
        == sum(memory.component_bytes(pipe_t2i).values())
    )


def test_loading_again_doubles_the_memory(sd_folder, pipe_t2i):
    from diffusers import AutoPipelineForImage2Image

    again = AutoPipelineForImage2Image.from_pretrained(sd_folder, safety_checker=None, requires_safety_checker=False)
    shared = memory.shared_components(pipe_t2i, again)
    assert not shared["unet"] and not shared["vae"]
    assert memory.unique_weight_bytes(pipe_t2i, again) == 2 * memory.unique_weight_bytes(pipe_t2i)


def test_attention_is_sdpa(pipe_t2i):
    assert memory.attention_backend(pipe_t2i) == "AttnProcessor2_0 (PyTorch SDPA)"


# -------------------------------------------------------------------------------------------- measuring
def test_measure_on_cpu():
    m = memory.measure(lambda: sum(range(1000)), "cpu")
    assert m.result == 499500 and m.seconds >= 0 and m.peak_bytes is None and m.peak_gib == "n/a (CPU)"


def test_markdown_table():
    assert memory.markdown_table(["a", "b"], [[1, "x"]]) == "| a | b |\n|---|---|\n| 1 | x |"


# ---------------------------------------------------------------------------------------- exercises
def test_auto_class_name_agrees_with_autopipeline(sd_folder, tmp_path):
    from diffusers import AutoPipelineForImage2Image

    built = AutoPipelineForImage2Image.from_pretrained(sd_folder, safety_checker=None, requires_safety_checker=False)
    assert ex.auto_class_name("image2image", "StableDiffusionPipeline") == type(built).__name__
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "PixArtSigmaPipeline"}))
    with pytest.raises(ValueError, match="can't find a pipeline linked to PixArtSigmaPipeline"):
        AutoPipelineForImage2Image.from_pretrained(tmp_path)
    assert ex.auto_class_name("image2image", "PixArtSigmaPipeline") == "ValueError"


def test_check_auto_class(capsys):
    from diffusers import StableDiffusionXLInpaintPipeline

    assert ex.check_auto_class("inpainting", "StableDiffusionXLPipeline", "StableDiffusionXLInpaintPipeline")
    assert ex.check_auto_class("inpainting", "StableDiffusionXLPipeline", StableDiffusionXLInpaintPipeline)
    assert not ex.check_auto_class("inpainting", "StableDiffusionXLPipeline", "StableDiffusionInpaintPipeline")
    assert ex.check_auto_class("image2image", "PixArtSigmaPipeline", "ValueError")
    assert not ex.check_auto_class("image2image", "PixArtSigmaPipeline", "PixArtSigmaPipeline")
    assert not ex.check_auto_class("image2image", "PixArtSigmaPipeline", None)
    assert "Not attempted" in capsys.readouterr().out


def test_check_from_pipe(pipe_t2i, sd_folder):
    from diffusers import (
        AutoPipelineForImage2Image,
        AutoPipelineForInpainting,
        EulerDiscreteScheduler,
    )

    euler = lambda: EulerDiscreteScheduler.from_config(pipe_t2i.scheduler.config)  # noqa: E731
    assert ex.check_from_pipe(pipe_t2i, AutoPipelineForImage2Image.from_pipe(pipe_t2i, scheduler=euler()))
    assert not ex.check_from_pipe(pipe_t2i, None)
    assert not ex.check_from_pipe(pipe_t2i, AutoPipelineForImage2Image.from_pipe(pipe_t2i))  # same scheduler class
    assert not ex.check_from_pipe(pipe_t2i, AutoPipelineForInpainting.from_pipe(pipe_t2i, scheduler=euler()))
    reloaded = AutoPipelineForImage2Image.from_pretrained(sd_folder, safety_checker=None, requires_safety_checker=False)
    reloaded.scheduler = euler()
    assert not ex.check_from_pipe(pipe_t2i, reloaded)
    original = pipe_t2i.scheduler
    try:  # changing pipe_t2i's own scheduler is not what was asked
        pipe_t2i.scheduler = euler()
        assert not ex.check_from_pipe(pipe_t2i, AutoPipelineForImage2Image.from_pipe(pipe_t2i))
    finally:
        pipe_t2i.scheduler = original


def test_check_strength_steps(pipe_i2i):
    before = list(pipe_i2i.scheduler.timesteps) if pipe_i2i.scheduler.timesteps is not None else None
    assert ex.check_strength_steps(pipe_i2i, 50, 20, 0.4)
    assert not ex.check_strength_steps(pipe_i2i, 50, 20, 0.3)
    assert not ex.check_strength_steps(pipe_i2i, 50, 20, 1.5)
    assert not ex.check_strength_steps(pipe_i2i, 50, 20, None)
    after = list(pipe_i2i.scheduler.timesteps) if pipe_i2i.scheduler.timesteps is not None else None
    assert before == after  # the learner's scheduler is left alone


# --------------------------------------------------------------------------------- notebook hygiene
def test_notebook_is_stored_clean():
    code = [c for c in read_notebook(NOTEBOOK).cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert code[0].source.strip() == "import course_utils\n\ncourse = course_utils.setup()"
    text = NOTEBOOK.read_text()  # the file as stored, metadata too
    source = notebook_code(NOTEBOOK)
    assert "torch_dtype" not in source  # the prose names it once, as the older name of dtype=
    for bad in (
        "use_auth_token",
        'revision=\\"fp16\\"',
        "runwayml/",
        "0.18215",
        '[\\"sample\\"]',
    ):
        assert bad not in text, bad
    assert not re.search(r"hf_[A-Za-z0-9]{20,}", text)  # no token
    assert "pipe_t2i.vae.enable_tiling" in source and ".enable_vae_tiling(" not in source
    assert "enable_attention_slicing(" not in source and "xformers" not in source


# ------------------------------------------------------------ the notebook's loops == the pipelines
SCHEDULERS = ("PNDMScheduler", "DDIMScheduler", "EulerDiscreteScheduler", "UniPCMultistepScheduler")
TOLERANCE = 1e-4  # fp32 on the CPU, as in lesson 02


def notebook_definitions(marker: str, end: str) -> str:
    """The one code cell of the lesson containing `marker`, up to the line starting with `end`."""
    source = notebook_cell(NOTEBOOK, marker)
    return source[: source.index(f"\n{end}")]


@pytest.fixture(scope="module")
def loops() -> dict:
    """The notebook's encode_prompt, img2img_by_hand, to_pil, mask_latents and inpaint_by_hand."""
    namespace: dict = {}
    for marker, end in (
        ("def img2img_by_hand(", "settings = "),
        ("def inpaint_by_hand(", "checks = "),
    ):
        exec(compile(notebook_definitions(marker, end), str(NOTEBOOK), "exec"), namespace)
    return namespace


def emoji_pipeline(folder: Path, cls_name: str, scheduler_name: str):
    """A `cls_name` pipeline of the trained emoji model, fp32, with the named scheduler."""
    import diffusers

    pipe = getattr(diffusers, cls_name).from_pretrained(
        folder, dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = getattr(diffusers, scheduler_name).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def apple():
    from course_utils.folders import load_emoji

    return load_emoji("red apple", 64)


def ellipse_mask(size: int = 64) -> Image.Image:
    """White (repaint) ellipse in the upper middle, as the notebook draws it."""
    from PIL import ImageDraw

    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse([0.15 * size, 0.25 * size, 0.85 * size, 0.55 * size], fill=255)
    return mask


def max_difference(mine: torch.Tensor, theirs: torch.Tensor) -> float:
    assert mine.shape == theirs.shape == (1, 3, 64, 64)
    return (mine - theirs).abs().max().item()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("scheduler_name", SCHEDULERS)
@pytest.mark.parametrize("strength", [0.6, 0.35])
def test_img2img_by_hand_matches_pipeline(loops, emoji_sd_folder, apple, scheduler_name, strength):
    pipe = emoji_pipeline(emoji_sd_folder, "StableDiffusionImg2ImgPipeline", scheduler_name)
    settings = dict(strength=strength, num_inference_steps=6, guidance_scale=3.0)
    mine = loops["img2img_by_hand"](pipe, "green apple", apple, generator=torch.Generator().manual_seed(4), **settings)
    theirs = pipe(
        prompt="green apple",
        image=apple,
        generator=torch.Generator().manual_seed(4),
        output_type="pt",
        **settings,
    ).images
    assert max_difference(mine, theirs) <= TOLERANCE


@pytest.mark.usefixtures("one_thread")
def test_img2img_by_hand_matches_pipeline_with_negative_prompt(loops, emoji_sd_folder, apple):
    pipe = emoji_pipeline(emoji_sd_folder, "StableDiffusionImg2ImgPipeline", "EulerDiscreteScheduler")
    settings = dict(strength=0.7, num_inference_steps=5, guidance_scale=3.0, negative_prompt="red")
    mine = loops["img2img_by_hand"](pipe, "apple", apple, generator=torch.Generator().manual_seed(2), **settings)
    theirs = pipe(
        prompt="apple",
        image=apple,
        generator=torch.Generator().manual_seed(2),
        output_type="pt",
        **settings,
    ).images
    assert max_difference(mine, theirs) <= TOLERANCE


@pytest.mark.usefixtures("one_thread")
def test_img2img_parity_check_notices_a_wrong_start(loops, emoji_sd_folder, apple):
    """The tolerance catches a loop that starts at another timestep or draws other noise."""
    pipe = emoji_pipeline(emoji_sd_folder, "StableDiffusionImg2ImgPipeline", "DDIMScheduler")
    settings = dict(num_inference_steps=6, guidance_scale=3.0)
    theirs = pipe(
        prompt="green apple",
        image=apple,
        strength=0.6,
        generator=torch.Generator().manual_seed(4),
        output_type="pt",
        **settings,
    ).images
    later = loops["img2img_by_hand"](
        pipe,
        "green apple",
        apple,
        strength=0.45,
        generator=torch.Generator().manual_seed(4),
        **settings,
    )
    other_noise = loops["img2img_by_hand"](
        pipe,
        "green apple",
        apple,
        strength=0.6,
        generator=torch.Generator().manual_seed(5),
        **settings,
    )
    assert max_difference(later, theirs) > 100 * TOLERANCE
    assert max_difference(other_noise, theirs) > 100 * TOLERANCE


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("scheduler_name", SCHEDULERS)
def test_inpaint_by_hand_matches_pipeline_4_channels(loops, emoji_sd_folder, scheduler_name):
    """4-channel UNet (the emoji model): the pipeline blends the kept area back after every step."""
    from course_utils.folders import load_emoji

    pipe = emoji_pipeline(emoji_sd_folder, "StableDiffusionInpaintPipeline", scheduler_name)
    assert pipe.unet.config.in_channels == 4
    face, mask = load_emoji("grinning face", 64), ellipse_mask()
    settings = dict(num_inference_steps=6, guidance_scale=3.0)
    mine = loops["inpaint_by_hand"](
        pipe,
        "smiling face with sunglasses",
        face,
        mask,
        generator=torch.Generator().manual_seed(0),
        **settings,
    )
    theirs = pipe(
        prompt="smiling face with sunglasses",
        image=face,
        mask_image=mask,
        output_type="pt",
        generator=torch.Generator().manual_seed(0),
        **settings,
    ).images
    assert max_difference(mine, theirs) <= TOLERANCE


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("scheduler_name", SCHEDULERS)
def test_inpaint_by_hand_matches_pipeline_9_channels(loops, standin_root, scheduler_name):
    """The stand-in has SD 1.5 inpainting's 9-channel UNet: mask and masked latents go in."""
    import diffusers

    folder = get_standin(standin_root, model_spec("sd15-inpaint"), "tiny")
    pipe = diffusers.AutoPipelineForInpainting.from_pretrained(
        folder, dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = getattr(diffusers, scheduler_name).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "StableDiffusionInpaintPipeline" and pipe.unet.config.in_channels == 9
    cat, mask = photos.load_photo("cat", 64), ellipse_mask()
    settings = dict(num_inference_steps=4, guidance_scale=7.5)
    mine = loops["inpaint_by_hand"](pipe, "a cat", cat, mask, generator=torch.Generator().manual_seed(1), **settings)
    theirs = pipe(
        prompt="a cat",
        image=cat,
        mask_image=mask,
        height=64,
        width=64,
        output_type="pt",
        generator=torch.Generator().manual_seed(1),
        **settings,
    ).images
    assert max_difference(mine, theirs) <= TOLERANCE


@pytest.mark.usefixtures("one_thread")
def test_inpaint_by_hand_keeps_the_area_outside_the_mask(loops, emoji_sd_folder):
    """The 4-channel branch blends: outside the mask the picture survives (not so if all white)."""
    from course_utils.folders import load_emoji

    pipe = emoji_pipeline(emoji_sd_folder, "StableDiffusionInpaintPipeline", "PNDMScheduler")
    face, mask = load_emoji("grinning face", 64), ellipse_mask()
    settings = dict(num_inference_steps=6, guidance_scale=3.0)
    inpainted = loops["inpaint_by_hand"](
        pipe, "ghost", face, mask, generator=torch.Generator().manual_seed(0), **settings
    )
    everywhere = loops["inpaint_by_hand"](
        pipe,
        "ghost",
        face,
        Image.new("L", (64, 64), 255),
        generator=torch.Generator().manual_seed(0),
        **settings,
    )
    kept = torch.from_numpy(np.asarray(mask) == 0)
    original = pipe.image_processor.preprocess(face) / 2 + 0.5
    gap_inpainted = (inpainted - original)[..., kept].abs().mean().item()
    gap_everywhere = (everywhere - original)[..., kept].abs().mean().item()
    assert gap_inpainted < 0.5 * gap_everywhere, (gap_inpainted, gap_everywhere)


def test_notebook_writes_the_diffusers_calls_out():
    """The calls the lesson teaches appear literally; helpers enter only in the sections on them."""
    cells = read_notebook(NOTEBOOK).cells
    code = notebook_code(NOTEBOOK)
    missing = missing_calls(
        NOTEBOOK,
        [
            "pipe_t2i.to(course.device)",
            "pipe_i2i(prompt=i2i_prompt, image=init_image, strength=",
            "pipe_inpaint(prompt=inpaint_prompt, image=inpaint_image, mask_image=mask,",
            ".latent_dist",
            "vae.config.scaling_factor",
            "scheduler.set_timesteps(",
            "scheduler.add_noise(",
            "scheduler.scale_model_input(",
            "image_processor.preprocess(",
            "mask_processor.preprocess(",
            "unet.config.in_channels == 9",
            "negative_prompt=negative",
            "assert difference <= tolerance",
        ],
    )
    assert not missing, f"lesson 03 no longer shows {missing} in a code cell"
    assert "**args" not in code
    # the small-GPU section uses diffusers' own calls; the course's memory planners moved out (lesson 10 teaches more)
    assert not missing_calls(NOTEBOOK, ["pipe_t2i.enable_model_cpu_offload()", "pipe_t2i.vae.enable_tiling()"])
    for helper in ("fit_to_gpu", "apply_plan", "plan_memory", "reset_memory_options"):
        assert helper not in code, helper
    first_check = next(i for i, c in enumerate(cells) if c.cell_type == "code" and "check_inputs(" in c.source)
    bad_input = next(i for i, c in enumerate(cells) if c.source.startswith("## 7. Bad input"))
    assert first_check > bad_input
    text = "\n".join(c.source for c in cells)
    assert "RuntimeError: cannot reshape tensor of 0" in text and "no error and no warning" in text


def pil_difference(mine, theirs) -> int:
    """Largest difference of two PIL pictures, in 0-255 levels."""
    assert mine.size == theirs.size and mine.mode == theirs.mode == "RGB"
    return int(np.abs(np.asarray(mine, dtype=np.int16) - np.asarray(theirs, dtype=np.int16)).max())


@pytest.mark.usefixtures("one_thread")
def test_by_hand_pictures_are_the_pipelines_pictures(loops, emoji_sd_folder, apple):
    """The notebook shows its by-hand results with to_pil: the same PIL pixels as the pipelines' own pictures
    (output_type="pil"), for image-to-image and inpainting. postprocess's default, which denormalises a [0, 1]
    tensor a second time, turns black into (128, 128, 128) and fails this."""
    from course_utils.folders import load_emoji

    i2i = emoji_pipeline(emoji_sd_folder, "StableDiffusionImg2ImgPipeline", "UniPCMultistepScheduler")
    settings = dict(strength=0.6, num_inference_steps=6, guidance_scale=3.0)
    mine = loops["img2img_by_hand"](i2i, "green apple", apple, generator=torch.Generator().manual_seed(4), **settings)
    theirs = i2i("green apple", image=apple, generator=torch.Generator().manual_seed(4), **settings).images[0]
    assert pil_difference(loops["to_pil"](i2i, mine)[0], theirs) <= 1
    assert pil_difference(i2i.image_processor.postprocess(mine)[0], theirs) > 100  # the washed-out way

    inpaint = emoji_pipeline(emoji_sd_folder, "StableDiffusionInpaintPipeline", "UniPCMultistepScheduler")
    face, mask = load_emoji("grinning face", 64), ellipse_mask()
    settings = dict(num_inference_steps=6, guidance_scale=3.0)
    mine = loops["inpaint_by_hand"](
        inpaint, "ghost", face, mask, generator=torch.Generator().manual_seed(0), **settings
    )
    theirs = inpaint(
        "ghost", image=face, mask_image=mask, generator=torch.Generator().manual_seed(0), **settings
    ).images[0]
    assert pil_difference(loops["to_pil"](inpaint, mine)[0], theirs) <= 1
    # and the notebook's figures use it: no [0, 1] tensor goes through postprocess's default
    shown = [c for c in cell_sources(NOTEBOOK) if "_by_hand(" in c and "show(" in c]
    assert len(shown) == 2 and all("to_pil(" in c and "postprocess(mine" not in c for c in shown)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("task", ["img2img", "inpaint"])
def test_by_hand_unet_inputs_have_the_pipelines_memory_layout(loops, emoji_sd_folder, apple, task):
    """image_processor.preprocess gives a channels-last view of the picture, so the VAE's latents are channels-last.
    The inpainting pipeline copies them (repeat) into the default layout, image-to-image keeps the VAE's; the UNet
    rounds differently on the two (full-size stand-in, 512 px, 2 steps: 9.6e-5 in the pixels; emoji model, 64 px:
    3.2e-6; 0.0 once the layouts agree). The VAE itself in channels-last layout makes sure of it here, and
    the by-hand loops' UNet inputs must have the pipelines' strides."""
    from course_utils.folders import load_emoji

    cls = "StableDiffusionImg2ImgPipeline" if task == "img2img" else "StableDiffusionInpaintPipeline"
    pipe = emoji_pipeline(emoji_sd_folder, cls, "DDIMScheduler")
    pipe.vae.to(memory_format=torch.channels_last)
    image = apple if task == "img2img" else load_emoji("grinning face", 64)
    kwargs = dict(strength=0.6) if task == "img2img" else dict(mask_image=ellipse_mask())
    strides: dict[str, list] = {"mine": [], "theirs": []}
    key = "mine"
    hook = pipe.unet.register_forward_hook(lambda module, args, out: strides[key].append(args[0].stride()))
    try:
        settings = dict(num_inference_steps=4, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
        if task == "img2img":
            loops["img2img_by_hand"](pipe, "green apple", image, **kwargs, **settings)
        else:
            loops["inpaint_by_hand"](pipe, "ghost", image, kwargs["mask_image"], **settings)
        key = "theirs"
        settings["generator"] = torch.Generator().manual_seed(0)
        pipe("ghost", image=image, output_type="pt", **kwargs, **settings)
    finally:
        hook.remove()
    assert len(strides["mine"]) == len(strides["theirs"]) > 1
    assert strides["mine"] == strides["theirs"]
