"""A run killed (SIGKILL, no chance to clean up) while it writes a checkpoint resumes from the
newest complete one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_utils.training import runs

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--preset",
    "smoke",
    "--max_steps",
    "15",
    "--checkpointing_steps",
    "5",
    "--save_image_steps",
    "1000",
    "--logger",
    "none",
    "--checkpoints_total_limit",
    "3",
]


def _train(output_dir: Path, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "COURSE_MODE": "smoke",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable,
        str(ROOT / "scripts" / "train_ddpm.py"),
        *ARGS,
        "--output_dir",
        str(output_dir),
        *extra,
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _resume_here(output_dir: Path, capsys) -> str:
    """scripts/train_ddpm.py --resume latest, run in this process (a new one would spend ~8 s on imports); its
    printed output."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("train_ddpm", ROOT / "scripts" / "train_ddpm.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    threads = torch.get_num_threads()
    try:
        code = script.main([*ARGS, "--output_dir", str(output_dir), "--resume", "latest"])
    finally:
        torch.set_num_threads(threads)
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 0, out[-3000:]
    return out


def _kill_while_saving(process: subprocess.Popen, checkpoints: Path, step: int, timeout: float = 240) -> str:
    """SIGKILL the run the moment its checkpoint for `step` starts being written; return what it was
    doing."""
    partial, final = checkpoints / f".checkpoint-{step}.partial", checkpoints / f"checkpoint-{step}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if partial.exists() or final.exists():
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            return "partial" if partial.exists() and not final.exists() else "published"
        time.sleep(0.001)
    process.kill()
    raise AssertionError(f"the run never started checkpoint-{step}: {process.stdout.read()[-2000:]}")


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_save_then_resume_latest_finishes(tmp_path, capsys):
    output_dir = tmp_path / "run"
    state = _kill_while_saving(_train(output_dir), output_dir / "checkpoints", 10)
    out = _resume_here(output_dir, capsys)  # the kill needs a process of its own; the resume does not
    assert state == "partial", "killed after the save finished: the test did not hit the write"
    assert f"resumed from {output_dir / 'checkpoints' / 'checkpoint-5'} at step 5" in out
    assert "done: step 15 of 15" in out
    assert not list((output_dir / "checkpoints").glob(".*partial"))
    assert [p.name for p in runs.checkpoints(output_dir)] == ["checkpoint-5", "checkpoint-10", "checkpoint-15"]


def _fake_checkpoint(folder: Path, complete: bool) -> None:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    if complete:
        (folder / "optimizer.bin").write_bytes(b"moments")
        (folder / "random_states_0.pkl").write_bytes(b"rng")


def test_latest_skips_a_half_written_checkpoint_and_says_so(tmp_path):
    _fake_checkpoint(tmp_path / "checkpoints" / "checkpoint-10", complete=True)
    _fake_checkpoint(tmp_path / "checkpoints" / "checkpoint-20", complete=False)
    with pytest.warns(UserWarning, match="Skipping incomplete checkpoint.*checkpoint-20"):
        assert runs.find_checkpoint(tmp_path, "latest").name == "checkpoint-10"


def test_publishing_replaces_an_older_save_of_the_same_step(tmp_path):
    old, new = tmp_path / "checkpoint-5", tmp_path / ".checkpoint-5.partial"
    _fake_checkpoint(old, complete=True)
    _fake_checkpoint(new, complete=True)
    (new / "marker").write_text("new")
    runs.publish_checkpoint(new, old)
    assert (old / "marker").read_text() == "new" and not new.exists()
