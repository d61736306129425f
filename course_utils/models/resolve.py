"""Where a model's files come from: the local hub cache, a download through the configured endpoint, or a
stand-in built here. Every lesson loads from the returned folder with plain `from_pretrained(folder)`."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from course_utils.models.emoji import FOR_KIND, emoji_model_folder, shipped_model
from course_utils.models.registry import ModelSpec
from course_utils.models.standins import get_standin

# Errors a second attempt cannot fix: the repo or file is not there, or access is refused; and
# timeouts, which huggingface_hub has already retried 5 times (each one HF_HUB_DOWNLOAD_TIMEOUT).
NOT_RETRIED = {
    "RepositoryNotFoundError",
    "GatedRepoError",
    "EntryNotFoundError",
    "RevisionNotFoundError",
    "ReadTimeout",
    "ConnectTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "TimeoutException",
}

# Kinds with no random-weight stand-in: at full size (2.5-12 B parameters) one would not fit a laptop and would only
# draw noise. Without the hub they fall back to the course's own small model of the same layout, emoji-sd3.
NO_STANDIN = {"sd3", "flux"}


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: the local folder, and where its files came from (cache, download or stand-in)."""

    spec: ModelSpec
    path: Path
    source: str
    detail: str = ""

    def __str__(self) -> str:
        return f"model {self.spec.name!r} ({self.spec.repo_id}): {self.source}{self.detail} -> {self.path}"


def _complete(folder: Path, spec: ModelSpec) -> bool:
    return all((folder / name).exists() for name in spec.required)


def from_cache(spec: ModelSpec) -> Path | None:
    """The repo's snapshot folder in the hub cache if every required file is there, else None. No network."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(spec.repo_id, allow_patterns=list(spec.allow_patterns), local_files_only=True))
    except Exception:  # LocalEntryNotFoundError and friends: simply not cached
        return None
    return folder if _complete(folder, spec) else None


def _waiting_for(spec: ModelSpec) -> str:
    """What a download is about to wait for, and for at most how long per request."""
    import os

    endpoint = os.environ.get("HF_ENDPOINT", "the hub")
    wait = os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    return (
        f"downloading {spec.repo_id} from {endpoint} (each request waits at most {wait} s "
        "for data: HF_HUB_DOWNLOAD_TIMEOUT)"
    )


def download(spec: ModelSpec, attempts: int = 3) -> Path:
    """Download the files the course needs (safetensors + configs, with a progress bar), retrying a broken
    connection: each retry resumes where the last one stopped. Raises the last error if every attempt fails."""
    from huggingface_hub import snapshot_download

    print(_waiting_for(spec), flush=True)
    for attempt in range(1, attempts + 1):
        try:
            folder = Path(snapshot_download(spec.repo_id, allow_patterns=list(spec.allow_patterns)))
            break
        except Exception as err:  # httpx timeouts and connection errors are not OSErrors in huggingface_hub 2.x
            if attempt == attempts or type(err).__name__ in NOT_RETRIED:
                raise
            print(
                f"download of {spec.repo_id} failed ({type(err).__name__}); retry {attempt}/{attempts - 1}, resuming",
                flush=True,
            )
            time.sleep(2 * attempt)
    missing = [name for name in spec.required if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{spec.repo_id}: download finished but {missing} are missing")
    return folder


def smoke_source(spec: ModelSpec, standin_root: Path) -> ModelSource:
    """Smoke mode: the course's emoji model trained for this kind of repo (shipped in data/models/), else a tiny
    random-weight stand-in."""
    trained = emoji_model_folder(spec)
    if trained is None and spec.kind in NO_STANDIN:
        trained = shipped_model(FOR_KIND[spec.kind])  # missing: an error that says how to rebuild it
    if trained is not None:
        return ModelSource(
            spec,
            trained,
            "course model",
            f" {trained.name!r}, trained on the shipped emoji, standing in for the real repo (smoke mode)",
        )
    return ModelSource(spec, get_standin(standin_root, spec, "tiny"), "stand-in", ", tiny random weights (smoke mode)")


def resolve(spec: ModelSpec, *, smoke: bool, hub_ok: bool, standin_root: Path) -> ModelSource:
    """Pick the model folder: smoke mode -> the course's emoji model; else cache, then download, then a full-size
    stand-in."""
    if smoke:
        return smoke_source(spec, standin_root)
    cached = from_cache(spec)
    if cached is not None:
        return ModelSource(spec, cached, "hub cache")
    reason = "hub unreachable"
    if hub_ok:
        try:
            return ModelSource(spec, download(spec), "downloaded")
        except Exception as err:  # a mirror outage must not end the lesson: say so loudly and carry on offline
            reason = f"download failed ({type(err).__name__}: {str(err)[:200]})"
            warnings.warn(
                f"{spec.repo_id}: {reason}. Using a stand-in with RANDOM weights: images will be noise. Run the cell "
                "again to resume the download, or check HF_ENDPOINT.",
                stacklevel=3,
            )
    if spec.kind in NO_STANDIN:
        folder = shipped_model(FOR_KIND[spec.kind])
        warnings.warn(
            f"{spec.repo_id}: {reason}. Using the course's small {folder.name!r} in the same pipeline layout instead: "
            "the lesson runs, at emoji scale.",
            stacklevel=3,
        )
        return ModelSource(spec, folder, "course model", f" {folder.name!r} in the same layout ({reason})")
    folder = get_standin(standin_root, spec, "full")
    return ModelSource(spec, folder, "stand-in", f", full-size architecture with RANDOM weights ({reason})")
