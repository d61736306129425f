"""The benchmarks' measuring parts: the steady window between device syncs, the ratio's interval, the step stamps
both training loops give (a trainer change that skipped the stamp would silently break bench/training.py), and the
notebook runner scripts/gpu_check.sh uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import training as bench_training  # noqa: E402
from timing import ratio_interval  # noqa: E402


def test_steady_window_starts_and_ends_on_synced_stamps():
    # 40 steps of 0.1 s, except the first (compiling, 5 s) and a slow one inside the window
    starts = [0.0, 5.0]
    for step in range(2, 41):
        starts.append(starts[-1] + (0.5 if step == 25 else 0.1))
    mean, median = bench_training.steady(starts, synced_every=10)  # window: stamps 10..40
    assert mean == pytest.approx((3.0 + 0.4) / 30)
    assert median == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no window"):
        bench_training.steady(starts[:15], synced_every=10)


def test_ratio_interval_brackets_the_true_ratio():
    reference = [2.0 + 0.01 * (i % 5) for i in range(15)]
    candidate = [1.0 + 0.01 * (i % 3) for i in range(15)]
    low, high = ratio_interval(candidate, reference)
    assert 1.9 < low <= high < 2.1


def test_both_training_loops_stamp_every_step(one_thread):
    from course_utils.training import TrainingConfig

    config = TrainingConfig.smoke(block_out_channels=(8, 16, 16), norm_num_groups=4)
    dataset = bench_training.dataset_for(config.image_size)
    course = bench_training.course_trainer(config, dataset, 22)
    reference = bench_training.reference_loop(config, dataset, 22)
    assert len(course) == 22 and len(reference) == 23  # a stamp as each step starts; the reference also stamps its end
    assert course == sorted(course) and reference == sorted(reference)
    for stamps, synced_every in ((course, config.logging_steps), (reference, 1)):
        mean, median = bench_training.steady(stamps, synced_every)
        assert 0 < median and 0 < mean < (stamps[-1] - stamps[0]) / 5


def test_reference_loop_runs_after_the_trainer_chose_another_precision(one_thread):
    """On a bf16 GPU the trainer sets accelerate's shared state to bf16 and the tutorial's loop asks for fp16."""
    from course_utils.training import TrainingConfig

    config = TrainingConfig.smoke(block_out_channels=(8, 16, 16), norm_num_groups=4)
    dataset = bench_training.dataset_for(config.image_size)
    bench_training.course_trainer(config.replace(mixed_precision="bf16"), dataset, 2)
    assert len(bench_training.reference_loop(config, dataset, 2)) == 3


def test_run_notebooks_reports_the_failing_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('broken on purpose')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "run_notebooks.py"),
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "FAILED" in done.stdout and "ValueError: broken on purpose" in done.stdout
    assert (tmp_path / "out" / "broken.ipynb").exists()


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_check.sh")]).returncode == 0


@pytest.mark.slow
def test_pixel_dtype_bench_keeps_one_noise_and_orders_the_precisions(one_thread, monkeypatch):
    """bench/pixel_dtype.py: fp32 from the same noise is itself (0.0), and an all-bf16 run moves further from it than
    a bf16 UNet with an fp32 sample does (the claim lesson 01 prints a table for)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import pixel_dtype
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    from course_utils.models.emoji import models_dir

    folder = models_dir() / "emoji-ddpm"
    unet, scheduler = UNet2DModel.from_pretrained(folder).eval(), DDPMScheduler.from_pretrained(folder)
    noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    run = lambda model, sample: pixel_dtype.sample(unet, scheduler, noise, 30, model, sample, seed=0)  # noqa: E731
    fp32 = run(torch.float32, torch.float32)
    assert torch.equal(fp32, run(torch.float32, torch.float32))
    all_bf16 = (run(torch.bfloat16, torch.bfloat16) - fp32).abs().mean()
    fp32_sample = (run(torch.bfloat16, torch.float32) - fp32).abs().mean()
    assert 0 < fp32_sample < all_bf16
