"""Tests of lesson 05's trainer: config presets and checks, mixed-precision choice, checkpoints, exact resume (also
after Ctrl-C), sampling that leaves training untouched, the saved model loading like lesson 01's, clear errors on
bad input, the exercise checks, and a short CPU run on the shipped dataset whose loss falls."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from course_utils.training import (
    TrainingConfig,
    check_training_inputs,
    choose_mixed_precision,
    diffusion_loss,
    make_unet,
    random_flips,
    runs,
    step_generator,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread for these tiny models


# --------------------------------------------------------------------------------------------------------- helpers
def shapes(count: int, size: int = 16, seed: int = 0) -> list[Image.Image]:
    """Synthetic pictures: a dark square or disc on a light background, in random places and colours."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(170, 256, 3)))
        x, y = (int(v) for v in rng.integers(0, size // 2, 2))
        r = int(rng.integers(size // 4, size // 2))
        draw = ImageDraw.Draw(image)
        (draw.ellipse if i % 2 else draw.rectangle)(
            [x, y, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 110, 3))
        )
        images.append(image)
    return images


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1


class ShapeImages(torch.utils.data.Dataset):
    """A torch Dataset yielding {'images': tensor in [-1, 1]}, the trainer's contract."""

    def __init__(self, count: int = 10, size: int = 16):
        self.images = [to_tensor(im) for im in shapes(count, size)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"images": self.images[i]}


def tiny_config(tmp_path: Path, **changes) -> TrainingConfig:
    """A 16 px UNet with a few thousand weights: each step takes milliseconds, so resume tests stay fast."""
    settings = dict(
        image_size=16,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        train_batch_size=4,
        max_steps=6,
        learning_rate=1e-3,
        lr_warmup_steps=2,
        eval_batch_size=2,
        num_inference_steps=2,
        save_image_steps=1000,
        checkpointing_steps=1000,
        checkpoints_total_limit=2,
        logger="none",
        output_dir=str(tmp_path / "run"),
        ema_power=0.75,
    )
    return TrainingConfig(**{**settings, **changes})


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from diffusers import UNet2DModel

    return UNet2DModel.from_pretrained(folder).state_dict()


def checkpoint_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst == 0.0, f"weights differ by up to {worst}"


@pytest.fixture(scope="module")
def straight_run(one_thread, tmp_path_factory):
    """6 steps in one go, with gradient accumulation over uneven epochs (10 images, batches of 4: 3 batches,
    2 steps per epoch) and random flips; the reference the resumed runs must match exactly."""
    tmp = tmp_path_factory.mktemp("straight")
    config = tiny_config(tmp, gradient_accumulation_steps=2, checkpointing_steps=1000)
    result = train(config, ShapeImages(10))
    return config, result


# ----------------------------------------------------------------------------------------------- config & helpers
def test_full_preset_is_the_seed_notes_model():
    config = TrainingConfig.full()
    assert config.image_size == 128 and config.train_batch_size == 16
    assert config.block_out_channels == (128, 128, 256, 256, 512, 512)
    assert [t.startswith("Attn") for t in config.down_block_types] == [False] * 4 + [True, False]
    assert config.up_block_types[1] == "AttnUpBlock2D" and config.layers_per_block == 2
    assert TrainingConfig.for_mode("full", num_epochs=3).num_epochs == 3


def test_smoke_preset_builds_a_small_model_that_fits_its_images():
    config = TrainingConfig.smoke()
    model = make_unet(config)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    x = torch.zeros(2, 3, config.image_size, config.image_size)
    assert model(x, 10).sample.shape == x.shape


def test_config_round_trips_through_json(tmp_path):
    config = TrainingConfig.smoke(learning_rate=3e-4)
    config.save(tmp_path / "c.json")
    assert TrainingConfig.load(tmp_path / "c.json") == config


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(image_size=100), "multiple of 32"),
        (dict(mixed_precision="fp61"), "Did you mean 'fp16'"),
        (dict(train_batch_size=0), "train_batch_size"),
        (dict(down_block_types=("DownBlock2D",)), "one block type of each per level"),
        (dict(learning_rate=0), "learning_rate"),
        (dict(torch_compile="false"), "torch_compile='false': expected True or False"),
        (dict(logging_steps=0), "logging_steps"),
    ],
)
def test_bad_config_fails_at_construction_with_the_field_named(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig.full(**changes)


@pytest.mark.parametrize(
    "requested, device, bf16, expected",
    [
        ("auto", "cpu", False, "no"),
        ("fp16", "cpu", False, "no"),
        ("auto", "cuda", True, "bf16"),
        ("auto", "cuda", False, "fp16"),
        ("bf16", "cuda", False, "fp16"),
        ("fp16", "cuda", True, "fp16"),
        ("no", "cuda", True, "no"),
        ("auto", "mps", False, "no"),
    ],
)
def test_mixed_precision_is_chosen_per_device(requested, device, bf16, expected):
    choice, why = choose_mixed_precision(requested, device, bf16)
    assert choice == expected and why


def test_step_generator_depends_on_seed_step_and_process_only():
    draw = lambda *key: torch.randn(3, generator=step_generator(*key))  # noqa: E731
    assert torch.equal(draw(0, 5, 0), draw(0, 5, 0))
    assert not torch.equal(draw(0, 5, 0), draw(0, 6, 0))
    assert not torch.equal(draw(0, 5, 0), draw(0, 5, 1))
    assert not torch.equal(draw(0, 5, 0), draw(1, 5, 0))


def test_random_flips_mirror_some_images_and_keep_the_rest():
    images = torch.arange(8 * 3 * 2 * 2, dtype=torch.float32).reshape(8, 3, 2, 2)
    flipped = random_flips(images, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images)]
    kept = [torch.equal(f, i) for f, i in zip(flipped, images)]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


def test_diffusion_loss_matches_the_written_out_step():
    """The trainer's loss is exactly the lesson's hand-written step: add_noise, predict, MSE."""
    from diffusers import DDPMScheduler

    config = TrainingConfig.smoke()
    torch.manual_seed(0)
    model, scheduler = make_unet(config), DDPMScheduler(num_train_timesteps=1000)
    clean = torch.rand(2, 3, 32, 32) * 2 - 1
    loss = diffusion_loss(model, scheduler, clean, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(clean.shape, generator=g)
    t = torch.randint(0, 1000, (2,), generator=g)
    by_hand = torch.nn.functional.mse_loss(model(scheduler.add_noise(clean, noise, t), t).sample, noise)
    assert torch.equal(loss, by_hand)


# ------------------------------------------------------------------------------------------------ runs & resume
def test_run_saves_checkpoints_samples_and_a_model_lesson_01_can_load(tmp_path, capsys):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    config = tiny_config(tmp_path, checkpointing_steps=2, save_image_steps=3, logger="tensorboard")
    result = train(config, ShapeImages(8))
    assert result.finished and result.step == 6 and len(result.history) == 6
    assert [runs.checkpoint_step(p) for p in runs.checkpoints(config.output_dir)] == [4, 6]  # limit 2: step 2 pruned
    assert sorted(runs.sample_grids(config.output_dir)) == [3, 6]
    assert list((Path(config.output_dir) / "logs").rglob("events.out.tfevents*")), "no TensorBoard log"
    # lesson 01's loading code, unchanged
    unet = UNet2DModel.from_pretrained(result.model_dir)
    DDPMScheduler.from_pretrained(result.model_dir)
    pipe = DDPMPipeline.from_pretrained(result.model_dir)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (16, 16)
    # the saved model holds the EMA weights, which differ from the last training weights
    training_weights = checkpoint_weights(result.checkpoint)
    assert any(not torch.equal(unet.state_dict()[k], training_weights[k]) for k in training_weights)
    assert "saved the EMA model" in capsys.readouterr().out


def test_losses_are_read_back_every_logging_steps_and_every_step_is_kept(tmp_path, one_thread, monkeypatch):
    """Reading a loss makes the CPU wait for the GPU: the trainer reads them in groups, without losing any."""
    from accelerate import Accelerator

    reads = []
    original = Accelerator.reduce

    def counted(self, tensor, *args, **kwargs):
        reads.append(tuple(tensor.shape))
        return original(self, tensor, *args, **kwargs)

    monkeypatch.setattr(Accelerator, "reduce", counted)
    grouped = train(tiny_config(tmp_path / "a", logging_steps=4), ShapeImages(8))
    assert reads == [(4,), (2,)]  # steps 1-4 at step 4, steps 5-6 at the end
    reads.clear()
    each = train(tiny_config(tmp_path / "b", logging_steps=1), ShapeImages(8))
    assert reads == [(1,)] * 6
    assert [h["step"] for h in grouped.history] == [1, 2, 3, 4, 5, 6]
    assert grouped.losses == each.losses and all(np.isfinite(grouped.losses))
    assert [h["lr"] for h in grouped.history] == [h["lr"] for h in each.history]


def test_the_optimizer_updates_all_weights_in_one_fused_kernel(tmp_path, one_thread, monkeypatch):
    made = []
    original = torch.optim.AdamW

    def adamw(*args, **kwargs):
        made.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", adamw)
    train(tiny_config(tmp_path, max_steps=1), ShapeImages(8))
    assert len(made) == 1 and made[0].get("fused") is True


def test_channels_last_trains_saves_and_resumes_exactly(tmp_path, one_thread, monkeypatch):
    """The speed switch changes the memory layout only: same keys, a model lesson 01 loads, an exact resume."""
    from diffusers.training_utils import EMAModel

    layouts = []
    original = EMAModel.step

    def step(self, parameters):
        parameters = list(parameters)
        layouts.append(all(p.is_contiguous(memory_format=torch.channels_last) for p in parameters if p.dim() == 4))
        return original(self, parameters)

    monkeypatch.setattr(EMAModel, "step", step)
    # fp32 on every device: on a GPU, bf16 and cuDNN's own algorithm choices would blur the exact comparison
    config = tiny_config(tmp_path, channels_last=True, gradient_accumulation_steps=2, mixed_precision="no")
    straight = train(config, ShapeImages(10))
    assert layouts and all(layouts), "the conv weights were not channels_last during training"
    plain = train(config.replace(channels_last=False, output_dir=str(tmp_path / "plain")), ShapeImages(10))
    np.testing.assert_allclose(straight.losses, plain.losses, rtol=0.05)  # the same training, rounded differently
    assert weights(straight.model_dir).keys() == weights(plain.model_dir).keys()
    paused = config.replace(output_dir=str(tmp_path / "paused"))
    train(paused, ShapeImages(10), stop_at_step=3)
    resumed = train(paused.replace(logging_steps=2), ShapeImages(10), resume="latest")  # reading the loss more often
    assert resumed.finished and len(resumed.history) == 6
    if not torch.cuda.is_available():  # the same arithmetic, bit for bit, on a CPU
        assert_same(checkpoint_weights(resumed.checkpoint), checkpoint_weights(straight.checkpoint))
        assert_same(weights(resumed.model_dir), weights(straight.model_dir))
    # the layout may not change on resume: the optimizer's saved moments keep the old one
    with pytest.raises(ValueError, match="channels_last"):
        train(paused.replace(channels_last=False), ShapeImages(10), resume="latest")


def test_torch_compile_compiles_the_unet_in_place(tmp_path, one_thread, monkeypatch):
    """Compiling takes minutes on a CPU, so here compile() only records its call; the GPU test below compiles."""
    from diffusers import UNet2DModel

    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    result = train(tiny_config(tmp_path, torch_compile=True, max_steps=2), ShapeImages(8))
    assert compiled == ["UNet2DModel"] and result.finished
    assert (
        UNet2DModel.from_pretrained(result.model_dir).state_dict().keys()
        == make_unet(tiny_config(tmp_path)).state_dict().keys()
    )  # no "_orig_mod." prefix in what is saved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiling on a CPU takes minutes; tier 3 (a GPU) runs it")
def test_torch_compile_and_channels_last_train_on_a_gpu(tmp_path):
    config = tiny_config(tmp_path, torch_compile=True, channels_last=True, max_steps=4, save_image_steps=4)
    result = train(config, ShapeImages(8))
    assert result.finished and all(np.isfinite(result.losses))
    eager = train(config.replace(torch_compile=False, output_dir=str(tmp_path / "eager")), ShapeImages(8))
    np.testing.assert_allclose(result.losses, eager.losses, rtol=0.05)


def test_stopped_and_resumed_run_ends_with_the_same_weights(tmp_path, straight_run):
    """3 steps, stop, resume for 3 more == 6 steps in one go (training weights and EMA weights), even though the
    stop falls mid-epoch, gradients are accumulated, images flipped, and the resumed run samples grids every step."""
    config, straight = straight_run
    config = config.replace(output_dir=str(tmp_path / "run"))
    first = train(config, ShapeImages(10), stop_at_step=3)
    assert first.step == 3 and first.model_dir is None and runs.checkpoint_step(first.checkpoint) == 3
    resumed = train(config.replace(save_image_steps=1), ShapeImages(10), resume="latest")
    assert resumed.finished and len(runs.sample_grids(config.output_dir)) == 3  # steps 4, 5, 6
    assert_same(checkpoint_weights(resumed.checkpoint), checkpoint_weights(straight.checkpoint))
    assert_same(weights(resumed.model_dir), weights(straight.model_dir))  # the EMA weights
    assert resumed.losses == straight.losses  # the history survives the resume too


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, straight_run):
    config, straight = straight_run
    config = config.replace(output_dir=str(tmp_path / "run"))

    class InterruptedOnce(ShapeImages):
        """Sends this process SIGINT (what Ctrl-C does) on the 10th image loaded, early in the run."""

        loads = 0

        def __getitem__(self, i):
            InterruptedOnce.loads += 1
            if InterruptedOnce.loads == 10:
                os.kill(os.getpid(), signal.SIGINT)
            return super().__getitem__(i)

    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="resume='latest'") as stopped:
        train(config, InterruptedOnce(10))
    assert signal.getsignal(signal.SIGINT) is previous, "the SIGINT handler was not restored"
    saved = runs.checkpoints(config.output_dir)
    assert len(saved) == 1 and 1 <= runs.checkpoint_step(saved[0]) < 6  # it stopped early, after a whole step
    assert f"stopped at step {runs.checkpoint_step(saved[0])} of 6" in str(stopped.value)
    resumed = train(config, ShapeImages(10), resume="latest")
    assert_same(weights(resumed.model_dir), weights(straight.model_dir))


def test_fp16_on_cpu_falls_back_to_fp32_and_says_so(tmp_path, capsys):
    result = train(tiny_config(tmp_path, mixed_precision="fp16", max_steps=1), ShapeImages(4))
    assert result.mixed_precision == "no"
    assert "needs a CUDA GPU; this run uses fp32" in capsys.readouterr().out


def test_bf16_autocast_trains_and_samples(tmp_path):
    """The GPU path's autocast, run on the CPU (which has bf16 autocast too): training and sampling both work."""
    config = tiny_config(tmp_path, mixed_precision="bf16", max_steps=2, save_image_steps=2)
    result = train(config, ShapeImages(4))
    assert result.mixed_precision == "bf16" and all(np.isfinite(result.losses))
    assert list(runs.sample_grids(config.output_dir)) == [2]


def test_a_half_precision_model_is_trained_in_fp32(tmp_path, capsys):
    config = tiny_config(tmp_path, max_steps=1)
    model = make_unet(config).half()
    train(config, ShapeImages(4), model=model)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert "cast to fp32" in capsys.readouterr().out


def test_push_to_hub_is_refused_before_training_when_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="hub is offline"):
        train(tiny_config(tmp_path, push_to_hub=True), ShapeImages(4))
    assert not (tmp_path / "run").exists(), "nothing should be written before the check"


def test_the_script_parses_every_config_field_and_trains(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_ddpm", ROOT / "scripts" / "train_ddpm.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = script.parse_args(
        [
            "--learning_rate",
            "3e-4",
            "--no-use_ema",
            "--block_out_channels",
            "16",
            "32",
            "32",
            "--max_steps",
            "none",
            "--num_epochs",
            "2",
        ]
    )
    config = script.config_from_args(args, "smoke")
    assert config == TrainingConfig.smoke(learning_rate=3e-4, use_ema=False, max_steps=None, num_epochs=2)
    monkeypatch.chdir(tmp_path)
    code = script.main(
        [
            "--preset",
            "smoke",
            "--dataset",
            "emoji",
            "--max_steps",
            "2",
            "--train_batch_size",
            "2",
            "--logger",
            "none",
            "--output_dir",
            "run",
            "--eval_batch_size",
            "1",
            "--num_inference_steps",
            "1",
        ]
    )
    assert code == 0 and (tmp_path / "run" / "model_index.json").exists()


@pytest.mark.slow
def test_two_processes_train_together(tmp_path):
    """The distributed path (what `accelerate launch --multi_gpu` does on GPUs), as 2 CPU processes under torchrun:
    one run with a global batch of 2 x 2 images, one checkpoint with both processes' random states, one model."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(ROOT / "scripts" / "train_ddpm.py"),
        "--preset",
        "smoke",
        "--dataset",
        "emoji",
        "--max_steps",
        "2",
        "--train_batch_size",
        "2",
        "--logger",
        "none",
        "--output_dir",
        str(tmp_path / "run"),
        "--eval_batch_size",
        "1",
        "--num_inference_steps",
        "1",
    ]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "4 images per step, on 2 x cpu" in done.stdout
    assert done.stdout.count("saved the EMA model") == 1  # by the main process only
    checkpoint = runs.checkpoints(tmp_path / "run")[-1]
    assert {p.name for p in checkpoint.glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}


def test_a_datasets_imagefolder_with_a_transform_trains(tmp_path):
    """The course's data path: an imagefolder with captions, set_transform to {'images': ...}; captions are ignored."""
    from datasets import load_dataset
    from torchvision import transforms

    folder = tmp_path / "shapes"
    folder.mkdir()
    for i, image in enumerate(shapes(6, size=24)):
        image.save(folder / f"{i}.png")
    (folder / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": f"{i}.png", "text": f"shape {i}"}) + "\n" for i in range(6))
    )
    dataset = load_dataset("imagefolder", data_dir=str(folder), split="train")
    prep = transforms.Compose([transforms.Resize(16), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
    dataset.set_transform(
        lambda batch: {"images": [prep(im.convert("RGB")) for im in batch["image"]], "text": batch["text"]}
    )
    result = train(tiny_config(tmp_path, max_steps=2, train_batch_size=3), dataset)
    assert result.finished and all(np.isfinite(result.losses))


# ----------------------------------------------------------------------------------------------- clear errors
def test_batch_larger_than_the_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs at least 4 images, but the dataset has 3. Use train_batch_size=3"):
        train(tiny_config(tmp_path), ShapeImages(3))


def test_image_size_not_matching_the_model_or_the_data_is_refused(tmp_path):
    config = tiny_config(tmp_path)
    with pytest.raises(ValueError, match="built for 32 px"):
        check_training_inputs(config, ShapeImages(8), make_unet(config.replace(image_size=32)))
    with pytest.raises(ValueError, match=r"shape \(3, 24, 24\).*Resize them to 16 px"):
        check_training_inputs(config, ShapeImages(8, size=24), make_unet(config))


def test_unnormalised_or_raw_items_are_refused(tmp_path):
    config = tiny_config(tmp_path)
    model = make_unet(config)
    raw = [{"images": torch.rand(3, 16, 16) * 255}] * 4
    with pytest.raises(ValueError, match=r"expects \[-1, 1\]"):
        check_training_inputs(config, raw, model)
    with pytest.raises(TypeError, match="no 'images'.*with_transform"):
        check_training_inputs(config, [{"image": Image.new("RGB", (16, 16))}] * 4, model)


def test_an_output_folder_holding_another_run_is_refused(tmp_path):
    config = tiny_config(tmp_path, max_steps=1)
    train(config, ShapeImages(4))
    with pytest.raises(
        FileExistsError, match="already holds a training run.*resume='latest'.*overwrite_output_dir=True"
    ):
        train(config, ShapeImages(4))
    train(config.replace(overwrite_output_dir=True), ShapeImages(4))  # starting over is one flag away
    with pytest.raises(ValueError, match=r"learning_rate: 0.001 -> 0.01"):
        train(config.replace(learning_rate=1e-2, max_steps=2), ShapeImages(4), resume="latest")


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no checkpoint yet"):
        train(tiny_config(tmp_path), ShapeImages(4), resume="latest")
    with pytest.raises(FileNotFoundError, match="is not a checkpoint folder"):
        runs.find_checkpoint(tmp_path, "checkpoint-7")


# ------------------------------------------------------------------------------------------------- exercises
def test_exercise_checks_accept_right_answers_and_reject_wrong_ones(capsys):
    from diffusers import DDPMScheduler

    from course_utils.exercises import lesson05_training as ex

    scheduler = DDPMScheduler(num_train_timesteps=1000)

    def right_add_noise(x0, noise, t):
        abar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def wrong_add_noise(x0, noise, t):
        abar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        return abar * x0 + (1 - abar) * noise

    assert ex.check_add_noise(right_add_noise, scheduler)
    assert not ex.check_add_noise(wrong_add_noise, scheduler)
    assert not ex.check_add_noise(None, scheduler)

    assert ex.check_total_steps(160, images=1000, batch_size=16, accumulation=2, processes=1, epochs=5)
    assert not ex.check_total_steps(315, images=1000, batch_size=16, accumulation=2, processes=1, epochs=5)
    assert not ex.check_total_steps(None, images=1000, batch_size=16, accumulation=2, processes=1, epochs=5)

    def right_ema(shadow, weights, decay):
        return decay * shadow + (1 - decay) * weights

    def wrong_ema(shadow, weights, decay):
        return (1 - decay) * shadow + decay * weights

    assert ex.check_ema_update(right_ema)
    assert not ex.check_ema_update(wrong_ema)
    assert not ex.check_ema_update(None)
    out = capsys.readouterr().out
    assert "✅" in out and "❌" in out and "Not attempted" in out


# ------------------------------------------------------------------------------------------------- it learns
def test_tiny_model_learns_on_the_shipped_dataset(tmp_path):
    """The smoke preset on the shipped emoji faces (lesson 05's smoke data), on CPU, 30 steps (about 2 s of CPU
    time): the mean loss of the last 10 steps is clearly below that of the first 10 (an untrained model predicts ~0,
    so the loss starts near 1)."""
    data = pytest.importorskip("course_utils.data")
    from course_utils.training.datasets import load_training_dataset

    faces = load_training_dataset("emoji-faces", hub_ok=False, verbose=False)
    dataset = data.with_transform(faces, TrainingConfig.smoke().image_size, flip=False)
    config = TrainingConfig.smoke(
        output_dir=str(tmp_path / "run"),
        max_steps=30,
        logger="none",
        use_ema=False,
        save_image_steps=1000,
        checkpointing_steps=1000,
        eval_batch_size=1,
        num_inference_steps=1,
    )
    result = train(config, dataset)
    first, last = np.mean(result.losses[:10]), np.mean(result.losses[-10:])
    assert last < 0.75 * first, f"loss did not fall: first 10 steps {first:.3f}, last 10 steps {last:.3f}"


# ------------------------------------------------------------------------------------------- the emoji faces
def test_emoji_faces_are_the_yellow_faces_of_the_shipped_set():
    """'emoji-faces' keeps about 100 yellow smileys: the smiling and worried faces, not cats, monkeys, skulls,
    devils, costumes or the red/blue/green faces."""
    pytest.importorskip("course_utils.data")
    from course_utils.training.datasets import load_training_dataset

    faces = load_training_dataset("emoji-faces", hub_ok=False, verbose=False)
    captions = set(faces["text"])
    assert 90 <= len(faces) <= 110
    assert {"grinning face", "smiling face with heart-eyes", "thinking face", "angry face"} <= captions
    for other in ("grinning cat", "see-no-evil monkey", "skull", "smiling face with horns", "clown face"):
        assert other not in captions
    assert not captions & {"hot face", "cold face", "face in clouds", "nauseated face"}
    assert all(s.startswith("face-") for s in faces["subgroup"])


def test_emoji_faces_needs_the_shipped_metadata_columns():
    from datasets import Dataset

    from course_utils.training.datasets import emoji_faces

    with pytest.raises(ValueError, match="'subgroup'"):
        emoji_faces(Dataset.from_dict({"text": ["grinning face"]}))


def test_train_ddpm_script_knows_the_emoji_faces(monkeypatch):
    """scripts/train_ddpm.py --dataset emoji-faces loads the faces through load_training_dataset."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_ddpm", ROOT / "scripts" / "train_ddpm.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    seen = {}

    def fake_train(config, dataset, resume=None, stop_at_step=None):
        seen["images"] = len(dataset)
        raise KeyboardInterrupt("stopped by the test")

    monkeypatch.setattr("course_utils.training.train", fake_train)
    code = script.main(["--preset", "smoke", "--dataset", "emoji-faces", "--logger", "none"])
    assert code == 130 and 90 <= seen["images"] <= 110


# ------------------------------------------------------------------------------------- a notebook run again
def test_a_rerun_continues_the_run_it_finds_and_scripts_still_get_the_error(tmp_path):
    """Lesson 05 run twice in full mode: rerun_choice finds the finished run, train(resume='latest') loads it
    again without training (same weights, same step), and train() without resume still refuses the folder."""
    config = tiny_config(tmp_path, max_steps=4)
    assert runs.rerun_choice(config.output_dir) is None  # nothing there yet: train from step 0
    first = train(config, ShapeImages(8))
    found = runs.rerun_choice(config.output_dir)
    assert found == first.step == 4
    assert runs.rerun_choice(config.output_dir, start_over=True) is None
    before = weights(Path(config.output_dir))
    again = train(config, ShapeImages(8), resume="latest")
    assert again.step == again.total_steps == 4 and len(again.losses) == 4
    assert_same(before, weights(Path(config.output_dir)))
    with pytest.raises(FileExistsError, match="already holds a training run"):
        train(config, ShapeImages(8))


def test_a_rerun_of_a_paused_run_continues_from_its_checkpoint(tmp_path, straight_run):
    """A notebook stopped mid-run and run again continues from the newest checkpoint, to the same weights."""
    ref_config, ref = straight_run
    config = ref_config.replace(output_dir=str(tmp_path / "run"))
    train(config, ShapeImages(10), stop_at_step=3)
    assert runs.rerun_choice(config.output_dir) == 3
    result = train(config, ShapeImages(10), resume="latest")
    assert result.step == 6
    assert_same(weights(Path(ref.output_dir)), weights(Path(config.output_dir)))


def test_an_output_dir_that_cannot_hold_a_run_is_refused_before_training(tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=r"output_dir=.*notes.txt' is a file, not a folder"):
        train(tiny_config(tmp_path).replace(output_dir=str(file)), ShapeImages(4))
    with pytest.raises(NotADirectoryError, match=r"lies under .*notes.txt', which is a file"):
        train(tiny_config(tmp_path).replace(output_dir=str(file / "run")), ShapeImages(4))


def test_a_read_only_output_dir_is_refused_before_training(tmp_path, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):  # what a read-only folder or file system answers (root ignores chmod)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(PermissionError, match=r"output_dir=.*cannot write in .*Permission denied.*Choose a folder"):
        runs.require_writable_folder(tmp_path / "run")


def test_a_truncated_checkpoint_names_itself_and_what_to_do(tmp_path):
    config = tiny_config(tmp_path).replace(max_steps=4, checkpointing_steps=2)
    first = train(config, ShapeImages(4), stop_at_step=4)
    weights_file = next(first.checkpoint.rglob("*.safetensors"))
    weights_file.write_bytes(weights_file.read_bytes()[: weights_file.stat().st_size // 2])
    with pytest.raises(RuntimeError, match=r"checkpoint-4' cannot be read .*cut short.*Delete that folder") as err:
        train(config.replace(max_steps=6), ShapeImages(4), resume="latest")
    assert "checkpoint-2" in str(err.value), "the earlier checkpoint to fall back on is named"
