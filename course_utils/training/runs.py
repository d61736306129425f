"""The output folder of a training run: its checkpoints (find, prune, pick one to resume), the config it was started
with, the loss history, and the final model in the layout of google/ddpm-cat-256, so lesson 01's
`UNet2DModel.from_pretrained(folder)` and `DDPMPipeline.from_pretrained(folder)` both load it."""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

from course_utils.training.config import TrainingConfig

CONFIG_FILE = "training_config.json"
HISTORY_FILE = "history.json"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
LOGS = "logs"
MODEL_FILES = ("model_index.json", "config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json")
# Settings that may change when a run is resumed: how long it runs, how often it saves, where it reports, how often
# the loss is read, and torch_compile (the same arithmetic fused differently: the training continues, but its
# rounding changes, so such a resume is no longer bit-identical). Not channels_last: the optimizer's saved moments
# would keep the old layout, and torch's fused CPU AdamW silently mis-updates weights whose moments are laid out
# differently from them.
RESUMABLE_CHANGES = {
    "num_epochs",
    "max_steps",
    "checkpointing_steps",
    "checkpoints_total_limit",
    "save_image_steps",
    "eval_batch_size",
    "num_inference_steps",
    "overwrite_output_dir",
    "logger",
    "push_to_hub",
    "hub_model_id",
    "hub_private_repo",
    "dataloader_num_workers",
    "output_dir",
    "logging_steps",
    "torch_compile",
}
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The complete checkpoint folders of a run, oldest (fewest steps) first."""
    folder = Path(output_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name) and is_complete(p)]
    return sorted(found, key=checkpoint_step)


def is_complete(folder: Path) -> bool:
    """True if a checkpoint folder holds the weights, the optimizer and the RNG state that
    save_state writes, or the single state.pt that lesson 08's LoRA trainer writes (renamed into place whole)."""
    if (folder / "state.pt").is_file():
        return True
    weights = (folder / "model.safetensors").is_file() or any(folder.glob("pytorch_model*.bin"))
    rng = any(folder.glob("random_states_*.pkl"))
    return weights and (folder / "optimizer.bin").is_file() and rng


def partial_folder(folder: Path) -> Path:
    """The hidden folder a checkpoint is written into before it is renamed to `folder`."""
    return folder.with_name(f".{folder.name}.partial")


def remove_partial_checkpoints(output_dir: str | Path) -> list[Path]:
    """Delete checkpoints left half-written by a run that was killed while saving; return them."""
    folder = Path(output_dir) / CHECKPOINTS
    partial = sorted(folder.glob(".checkpoint-*.partial")) if folder.is_dir() else []
    for path in partial:
        shutil.rmtree(path, ignore_errors=True)
    return partial


def publish_checkpoint(partial: Path, folder: Path) -> Path:
    """Rename a fully written checkpoint into place (an atomic rename: it is there whole or not at
    all)."""
    if folder.exists():  # the same step saved again (e.g. stopped, resumed, stopped at once)
        shutil.rmtree(folder)
    os.replace(partial, folder)
    return folder


def incomplete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoint folders that lack files (written by a run killed while saving, before saves were
    atomic)."""
    folder = Path(output_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name) and not is_complete(p))


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a checkpoint folder was saved at (from its name, checkpoint-<step>)."""
    match = _CHECKPOINT.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a checkpoint folder (expected a name like checkpoint-500).")
    return int(match.group(1))


def checkpoint_folder(output_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of `step` goes."""
    return Path(output_dir) / CHECKPOINTS / f"checkpoint-{step}"


def prune_checkpoints(output_dir: str | Path, keep: int | None) -> list[Path]:
    """Delete all but the newest `keep` checkpoints (None keeps all); return the deleted folders."""
    if keep is None:
        return []
    old = checkpoints(output_dir)[:-keep]
    for folder in old:
        shutil.rmtree(folder)
    return old


def find_checkpoint(output_dir: str | Path, resume: str | Path) -> Path:
    """Resolve resume='latest' or a checkpoint path to a folder, or raise an error that says what exists."""
    found = checkpoints(output_dir)
    listing = ", ".join(p.name for p in found) or "none"
    if str(resume) == "latest":
        newest = checkpoint_step(found[-1]) if found else -1
        skipped = [p for p in incomplete_checkpoints(output_dir) if checkpoint_step(p) > newest]
        if skipped:
            names = ", ".join(p.name for p in skipped)
            warnings.warn(
                f"Skipping incomplete checkpoint(s) {names} (the run was stopped while "
                "saving them); resuming from the newest complete one.",
                stacklevel=3,
            )
        if not found:
            raise FileNotFoundError(
                f"resume='latest', but {Path(output_dir) / CHECKPOINTS} holds no checkpoint yet. Start the run without "
                "resume= (a checkpoint is written every checkpointing_steps and when you stop a run), or check "
                "output_dir."
            )
        return found[-1]
    folder = Path(resume)
    if not folder.is_absolute() and not folder.exists():
        folder = Path(output_dir) / CHECKPOINTS / folder
    if not folder.is_dir() or not is_complete(folder):
        raise FileNotFoundError(
            f"resume={str(resume)!r}: {folder} is not a checkpoint folder. Checkpoints of this run: {listing}. "
            "Pass resume='latest' or one of those."
        )
    return folder


def holds_run(output_dir: str | Path) -> bool:
    """True if the folder already holds a training run (its config, checkpoints or a saved model)."""
    folder = Path(output_dir)
    return (folder / CONFIG_FILE).exists() or bool(checkpoints(folder)) or (folder / MODEL_FILES[0]).exists()


def rerun_choice(output_dir: str | Path, start_over: bool = False) -> int | None:
    """For a notebook that is run again: the step of the run already in output_dir that it should continue with
    resume='latest' (its newest complete checkpoint), or None to train from step 0 (nothing to continue, or
    start_over=True). train() itself keeps refusing a folder that holds a run, as a script should."""
    if start_over:
        return None
    found = checkpoints(output_dir)
    return checkpoint_step(found[-1]) if found else None


def clear_run(output_dir: str | Path) -> None:
    """Delete what a previous run wrote into output_dir (and nothing else that may live there)."""
    folder = Path(output_dir)
    for name in (CHECKPOINTS, SAMPLES, LOGS):
        shutil.rmtree(folder / name, ignore_errors=True)
    for name in (CONFIG_FILE, HISTORY_FILE, *MODEL_FILES):
        (folder / name).unlink(missing_ok=True)


def config_differences(old: TrainingConfig, new: TrainingConfig) -> dict[str, tuple]:
    """Fields that differ between two configs and may not change on resume, as {name: (old, new)}."""
    a, b = old.to_dict(), new.to_dict()
    return {k: (a[k], b[k]) for k in a if k not in RESUMABLE_CHANGES and a[k] != b.get(k)}


def require_writable_folder(folder: str | Path, name: str = "output_dir") -> Path:
    """Check, before any work, that `folder` is (or can become) a folder this user can write in: a clear error for a
    path that is a file, lies under a file, or is read-only, instead of a raw error after minutes of training."""
    import tempfile

    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under {str(existing)!r}, which is a file"
        raise NotADirectoryError(
            f"{name}={str(folder)!r} {where}, not a folder. Choose a folder path, e.g. 'outputs/run'."
        )
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".write-test-")
    except OSError as err:
        raise PermissionError(
            f"{name}={str(folder)!r}: cannot write in {str(existing)!r} ({err.strerror or err}). Choose a folder you "
            "can write to (on AutoDL, under /root/autodl-tmp), or fix its permissions."
        ) from err
    os.close(handle)
    os.unlink(probe)
    return folder


def unreadable_checkpoint(checkpoint: Path, err: Exception) -> RuntimeError:
    """The error for a checkpoint that exists but cannot be loaded (cut short by a full disk, a killed copy...)."""
    others = [c.name for c in checkpoints(checkpoint.parent.parent) if c != checkpoint]
    earlier = f" Earlier checkpoints: {', '.join(others)}." if others else " There is no earlier checkpoint."
    first_line = (str(err).splitlines() or ["no message"])[0][:200]
    return RuntimeError(
        f"Checkpoint {str(checkpoint)!r} cannot be read ({type(err).__name__}: {first_line}). "
        "A file in it is probably cut short: a full disk, or a copy that did not finish. Delete that folder and "
        f"resume again (resume='latest' then takes the newest complete one), or pass resume=<an earlier one>.{earlier}"
    )


def check_output_dir(config: TrainingConfig, resume: str | Path | None) -> Path | None:
    """Before a run: refuse to mix two runs in one folder; return the checkpoint to resume from (or None)."""
    folder = require_writable_folder(config.output_dir)
    if resume is None:
        if holds_run(folder) and not config.overwrite_output_dir:
            found = checkpoints(folder)
            last = f"; newest checkpoint at step {checkpoint_step(found[-1])}" if found else ""
            raise FileExistsError(
                f"output_dir={str(folder)!r} already holds a training run ({len(found)} checkpoints{last}). "
                "Continue it with resume='latest', start over with overwrite_output_dir=True (deletes that run), "
                "or choose another output_dir."
            )
        return None
    checkpoint = find_checkpoint(folder, resume)
    saved = folder / CONFIG_FILE
    if saved.exists():
        changed = config_differences(TrainingConfig.load(saved), config)
        if changed:
            lines = "\n".join(f"  {k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ValueError(
                f"The run in {folder} was started with other settings, which a resumed run must keep:\n{lines}\n"
                f"Use the same values (they are in {saved}), or start a new run in another output_dir."
            )
    return checkpoint


def save_history(output_dir: str | Path, history: list[dict]) -> None:
    """Write the loss/lr history as JSON next to the model."""
    (Path(output_dir) / HISTORY_FILE).write_text(json.dumps(history))


def load_history(output_dir: str | Path) -> list[dict]:
    """The loss/lr history saved by a finished run."""
    return json.loads((Path(output_dir) / HISTORY_FILE).read_text())


def save_ddpm(unet, scheduler, folder: str | Path) -> Path:
    """Save a DDPMPipeline's parts flat, like google/ddpm-cat-256: config.json and weights at the top, plus
    model_index.json."""
    from diffusers import DDPMPipeline

    folder = Path(folder)
    pipeline = DDPMPipeline(unet=unet, scheduler=scheduler)
    pipeline.unet.save_pretrained(folder)
    pipeline.scheduler.save_pretrained(folder)
    pipeline.save_config(folder)  # model_index.json: DDPMPipeline.from_pretrained(folder) finds the parts at the top
    return folder


def sample_grids(output_dir: str | Path) -> dict[int, Path]:
    """The sample grids a run saved, by optimizer step."""
    folder = Path(output_dir) / SAMPLES
    found = {}
    for path in sorted(folder.glob("step-*.png")):
        found[int(path.stem.split("-")[1])] = path
    return found
