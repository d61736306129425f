"""Lesson 05: the training loop written out in section 7 is the course's trainer (same weights and EMA weights, to the
bit, on a CPU, with a pause and a resume on both sides), and the calls the lesson teaches appear literally in its code
cells, not only in an output or in the text."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
import torch
from notebook_code import cell_sources, missing_calls, notebook_cell, notebook_code, notebook_path, read_notebook
from test_training import tiny_config  # 16 px, batches of 4: on 10 images, 3 batches an epoch

from course_utils import training
from course_utils.training import TrainingConfig

NOTEBOOK = notebook_path("05_train_ddpm.ipynb")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread for these tiny models

# What the lesson teaches, as it must appear in a code cell (comments do not count).
TAUGHT = [
    "Accelerator(",
    "mixed_precision=precision",
    "gradient_accumulation_steps=config.gradient_accumulation_steps",
    "DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed)",
    "step_scheduler_with_optimizer=False",
    "accelerator.prepare(",
    "accelerator.accumulate(",
    "accelerator.backward(loss)",
    "accelerator.sync_gradients",
    "accelerator.clip_grad_norm_(",
    "fused=True",
    "get_cosine_schedule_with_warmup(",
    "lr_scheduler.step()",
    "EMAModel(",
    "ema.step(",
    "accelerator.register_for_checkpointing(ema)",
    "accelerator.save_state(",
    "accelerator.load_state(",
    "dataloader.set_epoch(epoch)",
    "accelerator.skip_first_batches(dataloader,",
    "training.step_generator(",
    "training.diffusion_loss(",
    "training.random_flips(",
    "training.train(",
]
# The cells of section 7, found by a line each holds, and the cell's last line, which frees the loop's objects.
SETUP, LOOP, RUN = "dataloader = accelerator.prepare(", "def train_until(", "train_until(pause)"
FREE = "unet = optimizer = lr_scheduler = ema = accelerator = straight = None"


def table_calls(path: Path = NOTEBOOK) -> list[str]:
    """The names in the first column of the lesson's table of calls (its header: `| call | what it does |`)."""
    tables = [s for s in cell_sources(path, "markdown") if "| call | what it does |" in s]
    assert len(tables) == 1, f"expected one markdown cell with the table of calls, found {len(tables)}"
    rows = [line for line in tables[0].splitlines() if line.startswith("| `")]
    names = [
        re.match(r"[A-Za-z_][\w.]*", item).group(0)
        for row in rows
        for item in re.findall(r"`([^`]+)`", row.split("|")[1])
    ]
    assert len(names) >= 10, names
    return names


def not_written_out(path: Path = NOTEBOOK) -> list[str]:
    """The taught calls, and the calls the table names, that no code cell of the lesson at `path` makes."""
    code = notebook_code(path, comments=False)
    return missing_calls(path, TAUGHT) + [
        name for name in table_calls(path) if not re.search(rf"\b{re.escape(name)}\b", code)
    ]


def test_the_taught_calls_are_written_out_in_code_cells():
    missing = not_written_out()
    assert not missing, f"lesson 05 no longer shows {missing} in a code cell"
    assert "getsource" not in notebook_code(NOTEBOOK), "the lesson writes its loop out in cells, not as a source dump"


def test_the_taught_calls_check_can_fail(tmp_path):
    """A call that is only in a comment, or only in the table, is not written out."""
    nb = read_notebook(NOTEBOOK)
    loop = next(c for c in nb.cells if c.cell_type == "code" and LOOP in c.source)
    assert "with accelerator.accumulate(unet):" in loop.source
    loop.source = loop.source.replace("with accelerator.accumulate(unet):", "if True:  # accelerator.accumulate(unet)")
    table = next(c for c in nb.cells if c.cell_type == "markdown" and "| call | what it does |" in c.source)
    assert "| `clip_grad_norm_` |" in table.source
    table.source = table.source.replace("| `clip_grad_norm_` |", "| `clip_grad_norm_`, `clip_grad_value_` |")
    changed = tmp_path / NOTEBOOK.name
    nbformat.write(nb, changed)
    assert not_written_out(changed) == ["accelerator.accumulate(", "accelerator.accumulate", "clip_grad_value_"]


# ------------------------------------------------------------------------------------- the loop is the trainer's
@pytest.fixture(scope="module")
def faces():
    """Ten of lesson 05's smoke images: the shipped yellow face emoji, at 16 px, in [-1, 1]."""
    from course_utils.data import with_transform
    from course_utils.training.datasets import load_training_dataset

    raw = load_training_dataset("emoji-faces", hub_ok=False, verbose=False)
    return with_transform(raw.select(range(10)), 16, flip=False)


def run_lesson_loop(config: TrainingConfig, dataset, model, steps: int, source=notebook_cell) -> dict:
    """Run section 7's set-up, loop and run cells for `steps` steps on `config`; the names they leave."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup

    precision, _ = training.choose_mixed_precision(config.mixed_precision, "cpu", False)
    namespace = dict(
        course=SimpleNamespace(steps=lambda n, smoke=None, rehearsal=None: steps),
        config=config,
        dataset=dataset,
        model=model,
        noise_scheduler=DDPMScheduler(num_train_timesteps=1000),
        precision=precision,
        training=training,
        torch=torch,
        copy=copy,
        Accelerator=Accelerator,
        get_cosine_schedule_with_warmup=get_cosine_schedule_with_warmup,
    )
    for marker in (SETUP, LOOP, RUN):
        code = source(NOTEBOOK, marker)
        if marker == RUN:  # keep the objects the last line frees, to compare them
            assert code.rstrip().splitlines()[-1].startswith(FREE), "the run cell no longer ends by freeing its objects"
            code = code.rstrip().rsplit("\n", 1)[0]
        exec(compile(code, f"lesson 05: {marker}", "exec"), namespace)
    assert namespace["loop_steps"] == steps and namespace["step"] == steps
    return namespace


def trainer_run(config: TrainingConfig, dataset, model, pause: int):
    """training.train on the same config: paused at `pause` (a checkpoint), then resumed to the end. Its raw weights
    (the last checkpoint's) and its EMA weights (the saved model)."""
    from safetensors.torch import load_file

    training.train(config, dataset, model=model, stop_at_step=pause)
    result = training.train(config, dataset, resume="latest")
    assert result.finished and result.checkpoint is not None
    raw = load_file(result.checkpoint / "model.safetensors")
    ema = load_file(result.model_dir / "diffusion_pytorch_model.safetensors")
    return raw, ema


def lesson_weights(namespace: dict) -> tuple[dict, dict]:
    """The loop's raw weights and EMA weights, by parameter name."""
    unet = namespace["accelerator"].unwrap_model(namespace["unet"])
    names = [name for name, _ in unet.named_parameters()]
    raw = {name: p.detach().clone() for name, p in unet.named_parameters()}
    ema = dict(zip(names, (p.detach().clone() for p in namespace["ema"].shadow_params)))
    return raw, ema


def largest_difference(mine: dict, theirs: dict) -> float:
    assert mine.keys() <= theirs.keys(), sorted(mine.keys() - theirs.keys())[:3]
    return max(float((mine[k] - theirs[k]).abs().max()) for k in mine)


@pytest.mark.parametrize(
    "accumulation, steps",
    [
        (1, 8),  # 3 steps an epoch: paused at step 4, one batch into epoch 1 (skip_first_batches on resume)
        (2, 7),  # 2 steps an epoch (the last batch alone): paused at step 3, two batches into epoch 1
    ],
)
def test_the_lessons_loop_trains_what_the_trainer_trains(tmp_path, faces, accumulation, steps):
    """Section 7's cells and training.train, both paused halfway and resumed: the same raw weights and EMA weights,
    bit for bit, and the lesson's own check (resumed vs not paused) prints 0.0."""
    config = tiny_config(tmp_path, gradient_accumulation_steps=accumulation, max_steps=steps)
    torch.manual_seed(config.seed)
    model = training.make_unet(config)
    namespace = run_lesson_loop(config, faces, copy.deepcopy(model), steps)
    assert namespace["worst"] == 0.0
    assert namespace["saved"][3] > 0, "the pause should fall inside an epoch, so the resume skips batches"
    mine_raw, mine_ema = lesson_weights(namespace)

    raw, ema = trainer_run(config.replace(output_dir=str(tmp_path / "trainer")), faces, model, namespace["pause"])
    assert largest_difference(mine_raw, raw) == 0.0, "the lesson's loop and training.train end with other weights"
    assert largest_difference(mine_ema, ema) == 0.0, "the lesson's EMA and training.train's differ"
    assert largest_difference(mine_raw, mine_ema) > 0  # the comparison sees the two kinds of weights apart


def test_the_comparison_fails_when_the_loop_changes(tmp_path, faces):
    """Drop the gradient clipping from the lesson's loop: the weights no longer match the trainer's."""

    def without_clipping(notebook, marker):
        code = notebook_cell(notebook, marker)
        if marker == LOOP:
            assert "accelerator.clip_grad_norm_(" in code
            code = code.replace("accelerator.clip_grad_norm_(", "(lambda *args: None)(")
        return code

    config = tiny_config(tmp_path, max_steps=4, max_grad_norm=0.01)  # clips every step
    torch.manual_seed(config.seed)
    model = training.make_unet(config)
    namespace = run_lesson_loop(config, faces, copy.deepcopy(model), 4, source=without_clipping)
    mine_raw, _ = lesson_weights(namespace)
    raw, _ = trainer_run(config.replace(output_dir=str(tmp_path / "trainer")), faces, model, namespace["pause"])
    assert largest_difference(mine_raw, raw) > 0
