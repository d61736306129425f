"""Image datasets by name that load every time: from the hub (or its mirror) with the documented fallbacks, from a
folder of your own images, or from the emoji dataset shipped in data/emoji. Every load prints which source it used
and why the ones before it failed.

Order for a hub id: load_dataset through the endpoint -> snapshot_download(repo_type="dataset") and load the local
copy -> the repo's parquet conversion (refs/convert/parquet) -> a local imagefolder copy -> the shipped dataset."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from course_utils.checks.values import did_you_mean
from course_utils.folders import (
    CAPTION_COLUMNS,
    OFFLINE_NAME,
    find_images,
    is_split_error,
    load_image_folder,
    load_offline,
    offline_dataset_dir,
    quiet_datasets,
    split_error,
)
from course_utils.paths import data_root

if TYPE_CHECKING:  # importing datasets is slow: done inside the functions that need it
    from datasets import Dataset

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
SCRIPT_ERROR = "Dataset scripts are no longer supported"


class DatasetUnavailableError(RuntimeError):
    """No source could provide the dataset (raised only with fallback=False; otherwise the shipped one is used)."""


class SkipStep(Exception):
    """A fallback step that does not apply here (no network, no local copy): reported as skipped, not failed."""


@dataclass
class Attempt:
    """One step of the fallback chain: what was tried, how it ended ('ok', 'failed', 'skipped'), why, how long."""

    step: str
    outcome: str
    detail: str
    seconds: float

    def __str__(self) -> str:
        return f"  {self.step:<44} {self.outcome:<7} {self.detail} ({self.seconds:.2f} s)"


# ----------------------------------------------------------------------------------------------------------------
# A local dataset folder (a snapshot, a copy): images or data files
# ----------------------------------------------------------------------------------------------------------------
def load_local(folder: str | Path, split: str = "train") -> "Dataset":
    """A local dataset folder: images -> imagefolder; otherwise data files (parquet, csv, ...) via
    load_dataset(path)."""
    from datasets import load_dataset

    folder = Path(folder).expanduser()
    if find_images(folder) or not folder.is_dir():
        return load_image_folder(folder, split)
    try:
        with quiet_datasets():
            return load_dataset(str(folder), split=split)
    except ValueError as err:
        if is_split_error(err):
            raise split_error(split, str(folder), err) from None
        raise
    except FileNotFoundError as err:  # EmptyDatasetError and friends
        raise FileNotFoundError(f"No images and no data files (parquet, csv, jsonl) in {folder}: {err}") from err


# ----------------------------------------------------------------------------------------------------------------
# The hub fallbacks, one function each (the notebook calls them one by one; tests replace them)
# ----------------------------------------------------------------------------------------------------------------
def explain(err: BaseException) -> str:
    """A one-line reason for a failed step, with the fix where there is a known one."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if SCRIPT_ERROR in str(err):
        script = re.findall(r"found (\S+)", str(err))
        return (
            f"this repo is a loading script ({script[0] if script else 'a .py file'}); datasets 4+ no longer runs "
            "loading scripts. The hub's parquet conversion (refs/convert/parquet) usually has the same data."
        )
    name = type(err).__name__
    if name == "LocalEntryNotFoundError":
        return "not in the local hub cache"
    if name == "OfflineModeIsEnabled" or "OfflineModeIsEnabled" in text:
        return "offline mode is on (HF_HUB_OFFLINE=1) and it is not cached"
    return f"{name}: {text[:200]}"


def from_hub(repo_id: str, split: str) -> "Dataset":
    """Step 1: the usual `load_dataset(repo_id, split=...)` through the configured endpoint (HF_ENDPOINT)."""
    from datasets import load_dataset

    try:
        return load_dataset(repo_id, split=split)
    except ValueError as err:
        if is_split_error(err):
            raise split_error(split, repo_id, err) from None
        raise


def from_snapshot(repo_id: str, split: str, local_files_only: bool = False) -> "Dataset":
    """Step 2: download the dataset repo's files with snapshot_download (resumable), then load the local copy."""
    from huggingface_hub import snapshot_download

    folder = snapshot_download(repo_id, repo_type="dataset", local_files_only=local_files_only)
    return load_local(folder, split)


def parquet_patterns(split: str) -> list[str]:
    """File patterns of one split in the parquet branch (current 'cfg/split/0000.parquet' and older
    'cfg/x-split.parquet')."""
    base = split.split("[")[0]
    return [f"*/{base}/*.parquet", f"*/*-{base}.parquet", f"*/*-{base}-*.parquet"]


def from_parquet_branch(repo_id: str, split: str) -> "Dataset":
    """Step 3: the parquet files the hub converts every dataset to (revision refs/convert/parquet), loaded directly."""
    from datasets import load_dataset
    from huggingface_hub import snapshot_download

    folder = Path(
        snapshot_download(
            repo_id, repo_type="dataset", revision="refs/convert/parquet", allow_patterns=parquet_patterns(split)
        )
    )
    files = sorted(p for pattern in parquet_patterns(split) for p in folder.glob(pattern))
    if not files:
        raise FileNotFoundError(f"the parquet branch of {repo_id} has no files for split {split.split('[')[0]!r}")
    configs = sorted({p.relative_to(folder).parts[0] for p in files})
    config = "default" if "default" in configs else configs[0]
    files = [str(p) for p in files if p.relative_to(folder).parts[0] == config]
    with quiet_datasets():
        return load_dataset("parquet", data_files={split.split("[")[0]: files}, split=split)


def local_copies(repo_id: str, local_dir: str | Path | None = None) -> list[Path]:
    """Where a hand-made copy (git clone, unzipped download) may be: `local_dir`, else ./NAME and data/NAME."""
    if local_dir is not None:
        return [Path(local_dir).expanduser()]
    name = repo_id.split("/")[-1]
    return [Path.cwd() / name, data_root() / name]


def from_local_copy(repo_id: str, split: str, local_dir: str | Path | None = None) -> "Dataset":
    """Step 4: a copy you made yourself (e.g. `git clone` of the dataset repo) loaded as a local imagefolder."""
    candidates = local_copies(repo_id, local_dir)
    for folder in candidates:
        if folder.is_dir():
            return load_local(folder, split)
    raise SkipStep("no folder at " + " or ".join(str(c) for c in candidates))


# ----------------------------------------------------------------------------------------------------------------
# The chain
# ----------------------------------------------------------------------------------------------------------------
def _hub_ok_now() -> bool:
    """Decide once whether the hub answers: HF_HUB_OFFLINE=1 means no; else a ~1 s probe of HF_ENDPOINT."""
    from course_utils.hub import DEFAULT_ENDPOINT, hub_reachable, offline_requested

    return not offline_requested() and hub_reachable(os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT), timeout=1.0)


def _datasets_offline() -> bool:
    import datasets.config

    return bool(datasets.config.HF_HUB_OFFLINE)


def hub_steps(
    repo_id: str, split: str, hub_ok: bool, local_dir: str | Path | None = None
) -> list[tuple[str, Callable[[], "Dataset"]]]:
    """The fallback steps for a hub id, in order, as (label, function); without the hub the network steps skip at
    once."""

    def skip(reason: str) -> Callable[[], "Dataset"]:
        def step() -> "Dataset":
            raise SkipStep(reason)

        return step

    no_hub = "hub unreachable: not tried (would wait for timeouts)"
    if hub_ok or _datasets_offline():
        # In offline mode datasets fails at once, or reuses the data it cached on an earlier, online run.
        step1 = lambda: from_hub(repo_id, split)  # noqa: E731
    else:
        step1 = skip(no_hub)
    step2 = lambda: from_snapshot(repo_id, split, local_files_only=not hub_ok)  # noqa: E731
    step3 = (lambda: from_parquet_branch(repo_id, split)) if hub_ok else skip(no_hub)
    if hub_ok:  # once the mirror has timed out, the next network step would wait just as long
        step1, step2, step3 = _stop_after_a_timeout([step1, step2, step3])
    return [
        ("1. load_dataset via " + re.sub(r"^https?://", "", os.environ.get("HF_ENDPOINT", "hub")), step1),
        ("2. snapshot_download" + ("" if hub_ok else " (local cache only)"), step2),
        ("3. parquet files (refs/convert/parquet)", step3),
        ("4. local imagefolder copy", lambda: from_local_copy(repo_id, split, local_dir)),
    ]


def _stop_after_a_timeout(steps: list[Callable[[], "Dataset"]]) -> list[Callable[[], "Dataset"]]:
    """Wrap network steps so that after one times out, the others skip instead of waiting."""
    timed_out: list[str] = []

    def guarded(step: Callable[[], "Dataset"]) -> Callable[[], "Dataset"]:
        def run() -> "Dataset":
            if timed_out:
                raise SkipStep(f"not tried: an earlier step timed out ({timed_out[0]})")
            try:
                return step()
            except Exception as err:
                if "Timeout" in type(err).__name__ or "Timeout" in str(err):
                    timed_out.append(
                        f"{type(err).__name__}; HF_HUB_DOWNLOAD_TIMEOUT="
                        f"{os.environ.get('HF_HUB_DOWNLOAD_TIMEOUT', '10')} s"
                    )
                raise

        return run

    return [guarded(step) for step in steps]


def _stops_the_chain(err: BaseException, hub_ok: bool) -> bool:
    """Mistakes a fallback would only hide: a split that does not exist, or (hub reachable) a repo that does not."""
    if isinstance(err, ValueError) and "does not exist in" in str(err):
        return True
    return hub_ok and type(err).__name__ in {"DatasetNotFoundError", "RepositoryNotFoundError"}


def try_steps(
    steps: Sequence[tuple[str, Callable[[], "Dataset"]]], hub_ok: bool = False, verbose: bool = True
) -> tuple["Dataset | None", list[Attempt]]:
    """Run the steps in order until one returns a dataset; print and return what each did."""
    attempts: list[Attempt] = []
    for label, step in steps:
        started = time.perf_counter()
        dataset, error = None, None
        if verbose:  # the label first: a slow mirror must not leave the learner looking at nothing
            print(f"  {label:<44} ", end="", flush=True)
        try:
            dataset = step()
            outcome, detail = "ok", f"{len(dataset)} rows"
        except SkipStep as why:
            outcome, detail = "skipped", str(why)
        except Exception as err:
            outcome, detail, error = "failed", explain(err), err
        attempts.append(Attempt(label, outcome, detail, time.perf_counter() - started))
        if verbose:
            print(str(attempts[-1])[len(f"  {label:<44} ") :])
        if error is not None and _stops_the_chain(error, hub_ok):
            raise error
        if dataset is not None:
            return dataset, attempts
    return None, attempts


def standardize(dataset: "Dataset") -> "Dataset":
    """Name the image column 'image' and the caption column 'text', whatever the source called them."""
    from datasets import Image as ImageFeature

    columns = dataset.column_names
    if "image" not in columns:
        image_columns = [c for c, f in dataset.features.items() if isinstance(f, ImageFeature)]
        if not image_columns:
            raise ValueError(
                f"This dataset has no image column (columns: {columns}); lesson 04 needs an image dataset."
            )
        dataset = dataset.rename_column(image_columns[0], "image")
    if "text" not in dataset.column_names:
        for name in CAPTION_COLUMNS[1:]:
            if name in dataset.column_names:
                dataset = dataset.rename_column(name, "text")
                break
    return dataset


def _kind(name: str) -> str:
    """'offline', 'folder' or 'hub' for a name; unknown short names and missing paths raise a clear error."""
    from course_utils.models.registry import DATASETS

    if name == OFFLINE_NAME:
        return "offline"
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{name!r} is a file; pass the folder that holds the images (imagefolder layout).")
        return "folder"
    if HUB_ID.match(name) and not name.startswith((".", "~")):
        return "hub"
    if "/" in name or os.sep in name or name.startswith((".", "~")):
        raise FileNotFoundError(
            f"No folder at {name!r} (resolved: {path.resolve()}), and it is not a hub id (owner/name)."
        )
    known = [OFFLINE_NAME, *DATASETS]
    raise ValueError(
        f"Unknown dataset {name!r}.{did_you_mean(name, known)} Use a short name ({', '.join(map(repr, known))}), "
        "a hub id such as 'huggan/flowers-102-categories', or the path of a folder of images."
    )


def load_image_dataset(
    name_or_path: str,
    split: str = "train",
    hub_ok: bool | None = None,
    *,
    local_dir: str | Path | None = None,
    fallback: bool = True,
    verbose: bool = True,
) -> "Dataset":
    """Load an image dataset with an 'image' column (and 'text' captions when it has them), never failing for lack
    of network.

    `name_or_path`: 'emoji' (shipped offline), a registry short name ('flowers', 'butterflies'), a hub id, or a
    folder of images. `hub_ok`: whether the hub answers (course.hub_ok; None probes it once). A hub id goes through
    the fallback chain; when everything fails, the shipped dataset is used (`fallback=False` raises instead).
    """
    from course_utils.models.registry import dataset_id

    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a string or path, got {type(name_or_path).__name__}")
    if not str(name_or_path).strip():
        raise ValueError(
            "name_or_path is empty: pass a short name such as 'emoji' or 'flowers', "
            "a hub id, or a folder of images (use '.' for the current folder)."
        )
    name = dataset_id(str(name_or_path))
    kind = _kind(name)
    started = time.perf_counter()
    if kind == "offline":
        dataset, source = load_offline(split), f"shipped offline dataset ({offline_dataset_dir()})"
    elif kind == "folder":
        dataset, source = load_image_folder(name, split), f"local imagefolder ({Path(name).expanduser().resolve()})"
    else:
        hub_ok = _hub_ok_now() if hub_ok is None else bool(hub_ok)
        if verbose:
            print(
                f"dataset {name!r}, split {split!r} (hub {'reachable' if hub_ok else 'NOT reachable'}); trying in "
                "order:"
            )
        dataset, attempts = try_steps(hub_steps(name, split, hub_ok, local_dir), hub_ok, verbose)
        if dataset is not None:
            source = next(a.step for a in attempts if a.outcome == "ok").split(". ", 1)[1]
        elif not fallback:
            table = "\n".join(map(str, attempts))
            raise DatasetUnavailableError(
                f"Could not load {name!r} from any source:\n{table}\nConnect to the hub (or set a mirror: "
                "course_utils.setup(mirror='hf-mirror')), or put a copy in a local folder, or use 'emoji'."
            )
        else:
            dataset, source = load_offline("train"), f"shipped offline dataset {OFFLINE_NAME!r} INSTEAD of {name}"
            if verbose:
                print(f"  {'5. shipped offline dataset':<44} used    every step above failed or was skipped")
    dataset = standardize(dataset)
    if verbose:
        print(
            f"dataset {str(name_or_path)!r}: {source} -> {len(dataset)} images, columns {dataset.column_names} "
            f"({time.perf_counter() - started:.1f} s)"
        )
    return dataset
