"""course_utils.lora and scripts/train_lora.py: the folder reader as lesson 08 uses it
(course_utils.folders), the checks that turn bad input into clear errors, the trainable-parameter
count, the save/load/fuse/unfuse round trip on the real pipeline, the measurements
(course_utils.emoji_quality), and the trainer's exact resume."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from course_utils import lora
from course_utils.emoji_quality import colourfulness, distance_to_targets, generate, nearest_in
from course_utils.exercises.lesson08_lora import expected_lora_count
from course_utils.folders import load_image_tensors
from course_utils.training import lora as lora_trainer

ROOT = Path(__file__).resolve().parents[1]
CONCEPT = ROOT / "data" / "lora-concepts" / "inverted"
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread for these tiny models


def emoji_unet(emoji_sd_folder):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(emoji_sd_folder, subfolder="unet", dtype=torch.float32)


def config(**changes):
    from peft import LoraConfig

    return LoraConfig(**{"r": 4, "lora_alpha": 4, "target_modules": TARGETS, **changes})


# --------------------------------------------------------------------------------------- the folder
def write_images(folder: Path, count: int, size: int = 20) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        Image.new("RGB", (size, size + 4 * i), (40 * i, 0, 255)).save(folder / f"{i}.png")
        names.append(f"{i}.png")
    return names


def test_folder_with_metadata_jsonl(tmp_path):
    names = write_images(tmp_path, 3)
    rows = [{"file_name": n, "text": f"caption {i}"} for i, n in enumerate(names)]
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    images, captions = load_image_tensors(tmp_path, 16)
    assert images.shape == (3, 3, 16, 16) and captions == ["caption 0", "caption 1", "caption 2"]
    assert images.min() >= -1 and images.max() <= 1
    assert torch.allclose(images[0, :, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))  # (0, 0, 255)


def test_folder_images_and_metadata_are_read_as_the_dataset_path_reads_them(tmp_path):
    """Transparency comes out white (not black), and a metadata.jsonl naming a missing file is refused."""
    from PIL import Image

    sticker = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    sticker.putpixel((0, 0), (0, 0, 0, 0))  # a transparent corner
    sticker.save(tmp_path / "sticker.png")
    images, _ = load_image_tensors(tmp_path, 8, default_caption="a sticker")
    assert torch.allclose(images[0, :, 0, 0], torch.ones(3)) and images[0, 0, 4, 4] == 1.0
    rows = [{"file_name": "sticker.png", "text": "a"}, {"file_name": "gone.png", "text": "b"}]
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(FileNotFoundError, match="gone.png"):
        load_image_tensors(tmp_path, 8)


def test_folder_with_txt_captions_and_a_default(tmp_path):
    write_images(tmp_path, 2)
    (tmp_path / "0.txt").write_text("a photo of sks dog\n")
    with pytest.raises(ValueError, match=r"No caption for \['1.png'\].*default_caption"):
        load_image_tensors(tmp_path, 8)
    _, captions = load_image_tensors(tmp_path, 8, default_caption="a photo of sks cat")
    assert captions == ["a photo of sks dog", "a photo of sks cat"]


def test_folder_with_no_images_says_what_to_put_there(tmp_path):
    (tmp_path / "notes.txt").write_text("no pictures here")
    with pytest.raises(FileNotFoundError, match=r"No images in .*notes\.txt.*\.png"):
        load_image_tensors(tmp_path, 64)
    with pytest.raises(FileNotFoundError, match="No folder at"):
        load_image_tensors(tmp_path / "missing", 64)


def test_the_shipped_concepts(tmp_path):
    for style in ("inverted", "monochrome"):
        images, captions = load_image_tensors(ROOT / "data" / "lora-concepts" / style / "train", 64)
        assert len(images) == 24 and all(c.endswith(f" in {style} style") for c in captions)


# --------------------------------------------------------------------------------------- the checks
def test_rank_zero_is_refused_with_a_reason(emoji_sd_folder):
    unet = emoji_unet(emoji_sd_folder)
    for rank in (0, -2):
        with pytest.raises(ValueError, match=rf"r={rank}\): the rank must be a whole number of at least 1"):
            lora.check_lora_config(unet, config(r=rank))


def test_an_unknown_target_module_lists_the_real_ones(emoji_sd_folder):
    unet = emoji_unet(emoji_sd_folder)
    with pytest.raises(ValueError, match=r"\['to_z'\] are not layers.*'to_k'.*'to_out.0'.*'to_q'.*'to_v'"):
        lora.check_lora_config(unet, config(target_modules=["to_q", "to_z"]))
    lora.check_lora_config(unet, config())  # the real names pass
    assert {"to_q", "to_k", "to_v", "to_out.0"} <= set(lora.lora_target_names(unet))


def test_only_the_lora_weights_train_and_their_count(emoji_sd_folder):
    unet = emoji_unet(emoji_sd_folder)
    total_before = sum(p.numel() for p in unet.parameters())
    expected = expected_lora_count(unet, rank=4)
    unet.requires_grad_(False)
    unet.add_adapter(config())
    trainable, total = lora.count_parameters(unet)
    assert trainable == expected == 35_840  # 56 layers of 64 or 96 features, 4 * (in + out) each
    assert total == total_before + trainable
    assert all("lora_" in n for n, p in unet.named_parameters() if p.requires_grad)


def save_random_lora(unet, folder: Path, rank: int = 4, seed: int = 0) -> Path:
    """A LoRA with B not zero (so it changes the picture), saved as save_lora_weights writes it."""
    from diffusers import StableDiffusionPipeline

    unet.requires_grad_(False)
    unet.add_adapter(config(r=rank, lora_alpha=rank))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=lora_trainer.lora_state_dict(unet))
    return folder


def test_a_lora_for_another_architecture_is_refused_clearly(emoji_sd_folder, tmp_path):
    from diffusers import UNet2DConditionModel

    from course_utils.models.architectures import SD_UNET

    torch.manual_seed(0)
    other = save_random_lora(UNet2DConditionModel(**SD_UNET["tiny"]), tmp_path / "tiny")
    mine = save_random_lora(emoji_unet(emoji_sd_folder), tmp_path / "emoji")
    unet = emoji_unet(emoji_sd_folder)
    with pytest.raises(
        ValueError,
        match=r"does not fit this UNet: \d+ of its LoRA layers.*another "
        r"architecture",
    ):
        lora.check_lora_file(unet, other)
    lora.check_lora_file(unet, mine)  # the right one passes
    with pytest.raises(FileNotFoundError, match="No LoRA file"):
        lora.check_lora_file(unet, tmp_path)
    assert 100 < lora.file_size_kb(mine) < 200  # 35,840 fp32 weights


# ------------------------------------------------------------------------- save, load, fuse, unfuse
@pytest.fixture(scope="module")
def pipe(emoji_sd_folder):
    from diffusers import StableDiffusionPipeline, UniPCMultistepScheduler

    pipe = StableDiffusionPipeline.from_pretrained(
        emoji_sd_folder, dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_save_load_fuse_unfuse_round_trip(pipe, emoji_sd_folder, tmp_path):
    saved = save_random_lora(emoji_unet(emoji_sd_folder), tmp_path / "lora")
    prompts = ["red apple", "rocket"]
    kwargs = dict(seed=0, steps=6, guidance_scale=4.0)
    base = generate(pipe, prompts, **kwargs)
    pipe.load_lora_weights(saved, adapter_name="test")
    try:
        with_lora = generate(pipe, prompts, **kwargs)
        assert (with_lora - base).abs().max() > 0.1  # the LoRA changes the picture
        pipe.fuse_lora(components=["unet"], lora_scale=1.0)
        fused = generate(pipe, prompts, **kwargs)
        pipe.unfuse_lora(components=["unet"])
        unfused = generate(pipe, prompts, **kwargs)
        assert (fused - with_lora).abs().max() < 0.02  # merged weights: the same picture, up to rounding
        assert (unfused - with_lora).abs().max() < 1e-3  # unfused: back to the adapter's picture
        pipe.set_adapters(["test"], adapter_weights=[0.0])
        # weight 0: no LoRA. Not exactly the base picture: fuse + unfuse added and took away B @ A in fp32, which
        # leaves rounding in the base weights (1.6e-5 seen on one CPU); an active LoRA differs by more than 0.1.
        assert (generate(pipe, prompts, **kwargs) - base).abs().max() < 1e-4
        pipe.disable_lora()  # the LoRA layers skipped: the original picture, up to that rounding
        assert (generate(pipe, prompts, **kwargs) - base).abs().max() < 1e-4
    finally:
        pipe.unload_lora_weights()
    unloaded = generate(pipe, prompts, **kwargs)
    assert (unloaded - base).abs().max() < 1e-4  # the model is the original again, up to the same rounding


# -------------------------------------------------------------------------------------- the trainer
def load_script():
    spec = importlib.util.spec_from_file_location("train_lora", ROOT / "scripts" / "train_lora.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_args(out: Path, *extra: str) -> list[str]:
    return [
        "--data_dir",
        str(CONCEPT / "train"),
        "--output_dir",
        str(out),
        "--resolution",
        "64",
        "--max_train_steps",
        "6",
        "--train_batch_size",
        "4",
        "--checkpointing_steps",
        "2",
        "--prior_dir",
        str(CONCEPT / "heldout"),
        "--prior_batch_size",
        "2",
        *extra,
    ]


def test_the_script_trains_and_resumes_exactly(tmp_path, pipe):
    from safetensors.torch import load_file

    script = load_script()
    assert script.main(script_args(tmp_path / "straight")) == 0
    assert script.main(script_args(tmp_path / "paused", "--stop_at_step", "3")) == 0
    assert not (tmp_path / "paused" / lora.LORA_FILE).exists()
    assert script.main(script_args(tmp_path / "paused", "--resume", "latest")) == 0
    a = load_file(tmp_path / "straight" / lora.LORA_FILE)
    b = load_file(tmp_path / "paused" / lora.LORA_FILE)
    assert a.keys() == b.keys() and len(a) == 2 * 4 * 14  # A and B of 4 projections, 14 attentions
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(a[k].abs().max() > 0 for k in a if "lora.up" in k)  # B moved away from zero
    lora.check_lora_file(pipe.unet, tmp_path / "straight")


def test_the_trainer_trains_only_the_lora(tmp_path, emoji_sd_folder):
    """After a step, the frozen text encoder and VAE have no gradients and only LoRA weights train."""
    cfg = lora_trainer.LoraTrainingConfig(
        pretrained=str(emoji_sd_folder),
        data_dir=str(CONCEPT / "train"),
        output_dir=str(tmp_path),
        resolution=64,
        max_train_steps=1,
        train_batch_size=2,
    )
    accelerator, dtype, _ = lora_trainer._accelerator(cfg)
    run = lora_trainer._setup_run(cfg, accelerator, dtype)
    lora_trainer._train_step(cfg, run, accelerator, 0)
    for part in ("text_encoder", "vae"):
        params = list(run[part].parameters())
        assert not any(p.requires_grad for p in params), f"the {part} is not frozen"
        assert all(p.grad is None for p in params), f"the {part} got gradients"
    unet = accelerator.unwrap_model(run["unet"])
    trainable = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_colourfulness():
    grey = torch.full((1, 3, 8, 8), 0.3)
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 0.9
    assert torch.allclose(colourfulness(torch.cat([grey, red])), torch.tensor([0.0, 0.9]))


def test_the_trainer_refuses_bad_input(tmp_path, emoji_sd_folder):
    base = dict(
        pretrained=str(emoji_sd_folder),
        data_dir=str(CONCEPT / "train"),
        output_dir=str(tmp_path / "out"),
        resolution=64,
        max_train_steps=1,
    )
    with pytest.raises(ValueError, match="rank=0: the LoRA rank must be at least 1"):
        lora_trainer.train_lora(lora_trainer.LoraTrainingConfig(**base, rank=0), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No images in"):
        lora_trainer.train_lora(
            lora_trainer.LoraTrainingConfig(**{**base, "data_dir": str(tmp_path / "empty")}), progress=False
        )
    with pytest.raises(ValueError, match=r"\['attn'\] are not layers"):
        lora_trainer.train_lora(lora_trainer.LoraTrainingConfig(**base, target_modules=("attn",)), progress=False)
    with pytest.raises(FileNotFoundError, match="holds no checkpoint yet"):
        lora_trainer.train_lora(lora_trainer.LoraTrainingConfig(**base), resume="latest", progress=False)


def test_distances():
    a = torch.zeros(2, 3, 64, 64)
    b = torch.cat([torch.zeros(1, 3, 64, 64), torch.full((1, 3, 64, 64), 0.5)])
    assert torch.allclose(distance_to_targets(a, b), torch.tensor([0.0, 0.5]))
    distances, index = nearest_in(b, a[:1].expand(3, -1, -1, -1).clone())
    assert torch.allclose(distances, torch.tensor([0.0, 0.5])) and index.tolist() == [0, 0]


def test_a_truncated_lora_checkpoint_and_a_file_as_output_dir_are_explained(tmp_path, pipe):
    script = load_script()
    assert script.main(script_args(tmp_path / "paused", "--stop_at_step", "3")) == 0
    from course_utils.training import runs

    state = runs.checkpoints(tmp_path / "paused")[-1] / "state.pt"  # the one resume='latest' takes
    state.write_bytes(state.read_bytes()[:1000])
    with pytest.raises(RuntimeError, match=r"cannot be read .*cut short.*Delete that folder"):
        script.main(script_args(tmp_path / "paused", "--resume", "latest"))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        script.main(script_args(tmp_path / "a-file"))
