"""Lesson 08: the notebook's training loop is the trainer's (same LoRA weights after the same
steps), the calls it teaches appear literally in its cells, and each exercise check accepts right
answers and rejects the usual wrong ones with the right hint."""

from __future__ import annotations

import pytest
import torch
from notebook_code import missing_calls, notebook_cell, notebook_path

from course_utils import lora
from course_utils.exercises.lesson08_lora import check_fused_weight, check_lora_count, check_lora_forward
from course_utils.training import lora as lora_trainer

NOTEBOOK = notebook_path("08_lora_finetuning.ipynb")
TAUGHT = [
    "LoraConfig(",
    ".add_adapter(",
    "get_peft_model_state_dict(",
    "convert_state_dict_to_diffusers(",
    "StableDiffusionPipeline.save_lora_weights(",
    ".load_lora_weights(",
    ".set_adapters(",
    ".disable_lora()",
    ".fuse_lora(",
    ".unfuse_lora(",
    "cast_training_params(",
    "enable_gradient_checkpointing()",
    "Accelerator(mixed_precision=",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread for these tiny models


def test_the_taught_calls_are_written_out_in_the_notebook():
    missing = missing_calls(NOTEBOOK, TAUGHT)
    assert not missing, f"lesson 08 no longer shows {missing} in a cell"


def run_notebook_training(steps: int) -> dict:
    """Run the notebook's set-up, data, accelerator and loop cells for `steps` steps; their names."""
    import course_utils

    course = course_utils.setup(mode="smoke")
    namespace = {"course": course, "course_utils": course_utils}
    for marker, change in (
        ("lora_config = LoraConfig(", None),
        ("data_dir = concepts", None),
        ("accelerator = Accelerator(", None),
        ("for step in range(train_steps)", steps),
    ):
        source = notebook_cell(NOTEBOOK, marker)
        if change:
            assert "course.steps(400, smoke=30)" in source
            source = source.replace("course.steps(400, smoke=30)", f"course.steps(400, smoke={change})")
        source = source.replace("show(", "(lambda *a, **k: None)(")
        exec(compile(source, f"lesson 08: {marker}", "exec"), namespace)
    assert namespace["train_steps"] == steps
    return namespace


def test_the_notebook_trains_only_the_lora(tmp_path):
    """The text encoder and the VAE are frozen where the notebook sets up training: after a step they
    have no gradients (a trainable text encoder fills about 250 MB of them on SD 1.5), and only the
    LoRA weights of the UNet train."""
    namespace = run_notebook_training(1)
    pipe = namespace["pipe"]
    for part in ("text_encoder", "vae"):
        params = list(getattr(pipe, part).parameters())
        assert not any(p.requires_grad for p in params), f"the notebook does not freeze pipe.{part}"
        assert all(p.grad is None for p in params), f"pipe.{part} got gradients in the notebook's loop"
    unet = namespace["accelerator"].unwrap_model(namespace["unet"])
    trainable = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert sum(p.numel() for p in namespace["params"]) == 35_840
    # the cell's count, written out, is course_utils.lora.count_parameters
    assert (namespace["trainable"], namespace["total"]) == lora.count_parameters(unet)


def test_the_notebook_loop_trains_the_same_lora_as_the_trainer(tmp_path, emoji_sd_folder):
    """Run the notebook's set-up and loop cells for 3 steps, and the trainer for 3 steps with the
    same settings: the LoRA weights must agree."""
    namespace = run_notebook_training(3)
    notebook_lora = get_lora(namespace["accelerator"].unwrap_model(namespace["unet"]))

    config = lora_trainer.LoraTrainingConfig(
        pretrained=str(emoji_sd_folder),
        data_dir=str(namespace["data_dir"]),
        output_dir=str(tmp_path / "run"),
        resolution=64,
        max_train_steps=3,
        train_batch_size=8,
        learning_rate=1e-3,
        lr_warmup_steps=0,
        checkpointing_steps=100,
    )
    result = lora_trainer.train_lora(config, progress=False)
    trainer_lora = get_lora_file(result.lora_path)
    assert notebook_lora.keys() == trainer_lora.keys()
    moved = max((notebook_lora[k] - trainer_lora[k]).abs().max().item() for k in notebook_lora)
    assert moved < 1e-5, f"the notebook's loop and the trainer differ by {moved:.2e}"
    assert max(v.abs().max().item() for k, v in trainer_lora.items() if "lora.up" in k) > 1e-4


def get_lora(unet) -> dict:
    return {k: v.detach().float() for k, v in lora_trainer.lora_state_dict(unet).items()}


def get_lora_file(path) -> dict:
    from safetensors.torch import load_file

    return {k.removeprefix("unet."): v.float() for k, v in load_file(path).items()}


# ---------------------------------------------------------------------------------------- exercises
def test_check_lora_forward(capsys):
    assert check_lora_forward(lambda x, W, b, A, B, a, r: x @ W.T + b + (a / r) * x @ A.T @ B.T)
    assert not check_lora_forward(lambda x, W, b, A, B, a, r: x @ W.T + b)
    assert "frozen layer alone" in capsys.readouterr().out
    assert not check_lora_forward(lambda x, W, b, A, B, a, r: x @ W.T + b + x @ A.T @ B.T)
    assert "scaled by alpha / rank" in capsys.readouterr().out
    assert not check_lora_forward(lambda *args: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert not check_lora_forward(None)
    assert "Not attempted" in capsys.readouterr().out


def test_check_lora_count(capsys, emoji_sd_folder):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(emoji_sd_folder, subfolder="unet")
    targets = ("to_q", "to_k", "to_v", "to_out.0")
    right = sum(
        8 * (m.in_features + m.out_features)
        for n, m in unet.named_modules()
        if isinstance(m, torch.nn.Linear) and n.endswith(targets)
    )
    assert right == 71_680  # twice the rank-4 count
    assert check_lora_count(right, unet, rank=8)
    assert not check_lora_count(right // 2, unet, rank=8)
    assert "count each once" in capsys.readouterr().out
    assert not check_lora_count(right + 1, unet, rank=8)
    assert not check_lora_count(None, unet, rank=8)


def test_check_fused_weight(capsys):
    def fused(layer, scale):
        A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        return layer.base_layer.weight + scale * layer.scaling["default"] * B @ A

    assert check_fused_weight(fused)
    assert not check_fused_weight(lambda layer, scale: layer.base_layer.weight)
    assert "W + scale * (alpha / r) * B @ A" in capsys.readouterr().out
    assert not check_fused_weight(lambda layer, scale: fused(layer, 1.0))  # ignores the scale
    assert "at scale 0.5" in capsys.readouterr().out


def test_check_lora_count_on_a_unet_that_already_holds_a_lora(emoji_sd_folder):
    """In the lesson the pipeline's UNet holds adapters by then: the count must not change."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    unet = UNet2DConditionModel.from_pretrained(emoji_sd_folder, subfolder="unet")
    unet.add_adapter(LoraConfig(r=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    assert check_lora_count(71_680, unet, rank=8)
