"""course_utils.training.runtime: the one precision rule, the one stop handler and the one atomic checkpoint writer
that every trainer of the course uses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from course_utils.course import pick_dtype
from course_utils.training import runs, runtime

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "device, bf16, expected",
    [("cuda", True, "bf16"), ("cuda", False, "fp16"), ("mps", False, "fp16"), ("cpu", False, "no")],
)
def test_the_precision_rule_and_its_dtypes(device, bf16, expected):
    assert runtime.best_precision(device, bf16) == expected
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}[expected]
    assert runtime.weight_dtype(expected) == dtype


def test_inference_and_training_follow_the_same_rule():
    assert pick_dtype("mps", "full") == runtime.weight_dtype(runtime.best_precision("mps", False))
    assert pick_dtype("cpu", "full") == torch.float32 and pick_dtype("cuda", "smoke") == torch.float32
    assert runtime.choose_mixed_precision("auto", "cuda", True)[0] == runtime.best_precision("cuda", True)
    assert runtime.choose_mixed_precision("auto", "cuda", False)[0] == runtime.best_precision("cuda", False)
    assert runtime.choose_mixed_precision("auto", "cpu")[0] == "no"  # training: mixed precision only on CUDA


def _tracked_sources() -> dict[str, str]:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    wanted = [f for f in files if f.endswith((".py", ".ipynb")) and not f.startswith("tests/")]
    return {f: (ROOT / f).read_text() for f in wanted if (ROOT / f).is_file()}


def test_one_precision_rule_and_one_stop_handler():
    """Nothing outside runtime.py asks the GPU for bfloat16 or installs a signal handler."""
    rule, handler = re.compile(r"is_bf16_supported\("), re.compile(r"signal\.signal\(")
    home = "course_utils/training/runtime.py"
    assert [f for f, text in _tracked_sources().items() if rule.search(text) and f != home] == []
    assert [f for f, text in _tracked_sources().items() if handler.search(text) and f != home] == []


def test_a_save_cut_short_leaves_the_newest_complete_checkpoint(tmp_path):
    runtime.save_checkpoint(tmp_path, 10, lambda folder: runtime.write_state_file(folder, {"step": 10}))

    def dies_half_way(folder: Path) -> None:
        (folder / runtime.STATE_FILE).write_bytes(b"half a file")
        raise SystemExit("killed while saving")

    with pytest.raises(SystemExit):
        runtime.save_checkpoint(tmp_path, 20, dies_half_way)
    assert [p.name for p in runs.checkpoints(tmp_path)] == ["checkpoint-10"]
    latest = runtime.resume_checkpoint(tmp_path, "latest")
    assert runtime.read_state_file(latest) == {"step": 10}
    runtime.save_checkpoint(tmp_path, 20, lambda folder: runtime.write_state_file(folder, {"step": 20}), keep=1)
    assert [p.name for p in runs.checkpoints(tmp_path)] == ["checkpoint-20"]
    assert not list((tmp_path / runs.CHECKPOINTS).glob(".*"))  # the half-written folder is gone


def test_resume_names_what_exists(tmp_path):
    assert runtime.resume_checkpoint(tmp_path, None) is None
    with pytest.raises(FileNotFoundError, match="holds no checkpoint yet"):
        runtime.resume_checkpoint(tmp_path, "latest")
    runtime.save_checkpoint(tmp_path, 5, lambda folder: runtime.write_state_file(folder, {"step": 5}))
    assert runtime.resume_checkpoint(tmp_path, "checkpoint-5").name == "checkpoint-5"
    with pytest.raises(FileNotFoundError, match="checkpoint-5"):
        runtime.resume_checkpoint(tmp_path, "checkpoint-7")


def test_a_truncated_state_file_is_explained(tmp_path):
    folder = runtime.save_checkpoint(tmp_path, 3, lambda f: runtime.write_state_file(f, {"w": torch.zeros(1000)}))
    data = (folder / runtime.STATE_FILE).read_bytes()
    (folder / runtime.STATE_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match="cannot be read.*Delete that folder"):
        runtime.read_state_file(folder)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_ask_the_run_to_stop_then_the_handlers_are_restored(sig):
    said = []
    before = signal.getsignal(sig)
    with runtime.StopRequest(said.append) as stop:
        assert not stop.requested()
        os.kill(os.getpid(), sig)
        assert stop.requested() and said and "checkpoint" in said[0]
    assert signal.getsignal(sig) is before


def test_step_generators_depend_on_seed_step_and_process_only():
    draw = lambda *key: torch.rand(4, generator=runtime.step_generator(*key))  # noqa: E731
    assert torch.equal(draw(0, 7), draw(0, 7))
    assert not torch.equal(draw(0, 7), draw(0, 8)) and not torch.equal(draw(0, 7), draw(0, 7, 1))
