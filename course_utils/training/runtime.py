"""What every trainer of the course shares, in one place: the precision rule, the accelerator set-up, per-step seeded
random draws, one Ctrl-C/SIGTERM handler, and one atomic checkpoint writer with `resume="latest"`.

Lesson 05's DDPM trainer (training/loop.py), lesson 08's LoRA trainer (training/lora.py) and
scripts/train_emoji_models.py are built on it, so each of them resumes bit-identically and survives a kill during a
save in the same way."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from course_utils.checks.values import require_choice
from course_utils.training import runs
from course_utils.training.config import MIXED_PRECISION

STATE_FILE = "state.pt"  # the single-file checkpoint of the LoRA trainer and the emoji script


# ------------------------------------------------------------------------------------------------ what a run did
@dataclass
class RunResult:
    """What a call to a trainer did: where its files are, how far it got, its loss history and its time."""

    output_dir: Path
    step: int
    total_steps: int
    history: list  # one {"step", "loss", ...} per optimizer step
    seconds: float
    mixed_precision: str

    @property
    def losses(self) -> list[float]:
        """The loss of each step, in order."""
        return [h["loss"] for h in self.history]

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


# ---------------------------------------------------------------------------------------------- the precision rule
def best_precision(device_type: str, bf16_supported: bool) -> str:
    """The course's one precision rule: bf16 on CUDA GPUs that have it, fp16 on other GPUs (older CUDA cards, Apple
    MPS), full fp32 ('no') on a CPU."""
    if device_type == "cuda":
        return "bf16" if bf16_supported else "fp16"
    return "fp16" if device_type == "mps" else "no"


def has_bf16(device_type: str) -> bool:
    """True on a CUDA GPU with bfloat16 kernels (A100, H100, RTX 30/40 and newer)."""
    return device_type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def weight_dtype(precision: str) -> torch.dtype:
    """The dtype of frozen weights (and of inference) for a precision: 'bf16', 'fp16' or 'no' (fp32)."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)


def choose_mixed_precision(requested: str, device_type: str, bf16_supported: bool | None = None) -> tuple[str, str]:
    """Map a training request (auto/no/fp16/bf16) to what this device can do; return (choice, a sentence saying why).
    Training uses mixed precision on CUDA GPUs only: accelerate has no fp16 loss scaling elsewhere. bf16_supported
    defaults to what this machine's GPU reports."""
    require_choice("mixed_precision", requested, MIXED_PRECISION)
    bf16_supported = has_bf16(device_type) if bf16_supported is None else bf16_supported
    if device_type != "cuda":
        if requested == "fp16":
            return "no", (
                f"mixed_precision='fp16' needs a CUDA GPU; this run uses fp32 on {device_type} instead "
                "(fp16 kernels such as LayerNorm do not exist on CPU)."
            )
        if requested == "bf16":
            return "bf16", f"bf16 autocast on {device_type}: it works, but is usually slower than fp32 there."
        return "no", f"fp32 on {device_type} (mixed precision only pays off on a GPU)."
    if requested == "auto":
        if best_precision(device_type, bf16_supported) == "bf16":
            return "bf16", "bf16 autocast: this GPU supports bfloat16, which needs no loss scaling."
        return "fp16", "fp16 autocast with a gradient scaler: this GPU has no bfloat16 (e.g. V100, T4)."
    if requested == "bf16" and not bf16_supported:
        return (
            "fp16",
            "mixed_precision='bf16' requested, but this GPU has no bfloat16: using fp16 with a gradient scaler.",
        )
    if requested == "no":
        return "no", "fp32 (mixed precision switched off)."
    return requested, f"{requested} autocast" + (" with a gradient scaler." if requested == "fp16" else ".")


# ---------------------------------------------------------------------------------------------------- accelerate
def process_state():
    """accelerate's state of this process (device, rank, world size), created once; CPU processes need cpu=True."""
    import os

    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # `accelerate launch --cpu` sets ACCELERATE_USE_CPU; torchrun on a machine without CUDA sets only WORLD_SIZE.
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or (several and not torch.cuda.is_available()))


def make_accelerator(
    mixed_precision: str = "auto",
    gradient_accumulation_steps: int = 1,
    output_dir: str | Path | None = None,
    tensorboard: bool = False,
    data_seed: int | None = None,
):
    """An Accelerator with the precision this device supports; return (accelerator, a sentence on the precision).

    output_dir sets where TensorBoard logs go (<output_dir>/logs); data_seed makes the DataLoader's shuffle order
    depend on (data_seed, epoch) only, so a resumed run sees the same batches."""
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import ProjectConfiguration

    # accelerate keeps one state per process: forget the last run's, so a notebook can train again with other settings
    AcceleratorState._reset_state()
    GradientState._reset_state()
    device = process_state().device
    precision, why = choose_mixed_precision(mixed_precision, device.type)
    log_with = None
    if tensorboard:
        try:
            import tensorboard as _  # noqa: F401  (accelerate's tracker needs it)

            log_with = "tensorboard"
        except ImportError:
            why += " TensorBoard is not installed, so the loss is only kept in the run's history."
    project = None
    if output_dir is not None:
        project = ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(Path(output_dir) / runs.LOGS))
    accelerator = Accelerator(
        mixed_precision=precision,
        gradient_accumulation_steps=gradient_accumulation_steps,
        log_with=log_with,
        project_config=project,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=data_seed is not None, data_seed=data_seed),
        step_scheduler_with_optimizer=False,  # the trainers step the lr schedule once per optimizer step themselves
    )
    return accelerator, why


# ------------------------------------------------------------------------------------------ per-step random draws
def step_generator(seed: int, step: int, process_index: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator seeded by (seed, step, process): a step's random draws do not depend on anything that came before,
    so a resumed run draws exactly what the uninterrupted run drew."""
    import numpy as np

    state = int(np.random.SeedSequence([seed, step, process_index]).generate_state(1, dtype=np.uint64)[0])
    device = torch.device(device)
    return torch.Generator(device="cpu" if device.type == "mps" else device).manual_seed(state)


# ------------------------------------------------------------------------------------------------ stopping a run
class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM asks the run to stop after the current step and save a checkpoint; a second one, a
    second or more later, stops at once. Use it as `with StopRequest(print) as stop:` and check `stop.requested()`."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, say=print):
        self.flag, self.say, self.previous, self.first = False, say, {}, 0.0

    def _handle(self, signum, frame) -> None:
        # A launcher (torchrun, accelerate launch) forwards the terminal's Ctrl-C: ignore a copy within a second.
        if self.flag and time.monotonic() - self.first > 1.0:
            raise KeyboardInterrupt("second stop request: stopped at once, without saving")
        if self.flag:
            return
        self.flag, self.first = True, time.monotonic()
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.say(
            f"\n{name}: finishing this step (with several processes: up to the next logging step), then saving a "
            "checkpoint (press Ctrl-C again to stop at once, unsaved)."
        )

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # signal handlers only work there
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def requested(self, accelerator=None) -> bool:
        """True once any process was asked to stop (all processes agree, so they stop at the same step)."""
        if accelerator is None or accelerator.num_processes == 1:
            return self.flag
        flag = torch.tensor([float(self.flag)], device=accelerator.device)
        return bool(accelerator.gather(flag).max() > 0)


# --------------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(
    output_dir: str | Path, step: int, write: Callable[[Path], None], keep: int | None = None, accelerator=None
) -> Path:
    """Write checkpoints/checkpoint-<step> atomically: `write(folder)` fills a hidden folder, which is renamed into
    place once complete, so a run killed while saving leaves the newest complete checkpoint as it was. Then keep only
    the newest `keep`. With an accelerator, every process calls `write` (accelerator.save_state is collective) and the
    main process renames."""
    folder = runs.checkpoint_folder(output_dir, step)
    partial = runs.partial_folder(folder)
    main = accelerator is None or accelerator.is_main_process
    wait = accelerator.wait_for_everyone if accelerator is not None else (lambda: None)
    if main:
        runs.remove_partial_checkpoints(output_dir)
        partial.mkdir(parents=True)
    wait()
    write(partial)
    wait()
    if main:
        runs.publish_checkpoint(partial, folder)
        runs.prune_checkpoints(output_dir, keep)
    wait()
    return folder


def write_state_file(folder: Path, state: dict) -> None:
    """The single-file checkpoint: everything a resume needs, in folder/state.pt."""
    torch.save(state, Path(folder) / STATE_FILE)


def read_state_file(checkpoint: str | Path) -> dict:
    """Read a state.pt checkpoint onto the CPU, or raise an error that names it and says what to do."""
    checkpoint = Path(checkpoint)
    try:
        return torch.load(checkpoint / STATE_FILE, weights_only=False, map_location="cpu")
    except Exception as err:  # cut short by a full disk or a killed copy
        raise runs.unreadable_checkpoint(checkpoint, err) from err


def resume_checkpoint(output_dir: str | Path, resume: str | Path | None) -> Path | None:
    """The checkpoint to continue from: None for a fresh run, the newest complete one for resume='latest', or the
    folder given (a path, or a name under output_dir/checkpoints); a clear error when there is none."""
    return None if resume is None else runs.find_checkpoint(output_dir, resume)
