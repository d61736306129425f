"""Image datasets that load every time: from the hub (or its mirror) with the documented fallbacks, from a folder of
your own images, or from the emoji dataset shipped in data/emoji/, plus the preprocessing and DataLoader that the
training lesson uses. Every load prints which source it used and why the ones before it failed.

Order for a hub id: load_dataset through the endpoint -> snapshot_download(repo_type="dataset") and load the local
copy -> the repo's parquet conversion (refs/convert/parquet) -> a local imagefolder copy -> the shipped dataset."""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from PIL import Image

from course_utils.checks.values import did_you_mean, require_positive_int
from course_utils.paths import data_root

if TYPE_CHECKING:  # importing datasets/torch is slow: done inside the functions that need them
    from datasets import Dataset
    from torch.utils.data import DataLoader

OFFLINE_NAME = "emoji"
# Columns that hold a caption in common datasets; renamed to "text" so every lesson reads the same name.
CAPTION_COLUMNS = ("text", "caption", "captions", "prompt", "description", "sentence")
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
SCRIPT_ERROR = "Dataset scripts are no longer supported"


class DatasetUnavailableError(RuntimeError):
    """No source could provide the dataset (raised only with fallback=False; otherwise the shipped one is used)."""


class CorruptImageWarning(UserWarning):
    """Some image files could not be read and were left out of the dataset."""


def _stacklevel_outside_course_utils() -> int:
    """The warnings stacklevel of the first caller outside course_utils, so a warning points at the learner's line."""
    import sys

    frame, level = sys._getframe(1), 1  # frame 1 (stacklevel 1): the function that is about to warn
    while frame is not None and frame.f_globals.get("__name__", "").startswith("course_utils"):
        frame, level = frame.f_back, level + 1
    return level


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
# Finding and checking images on disk
# ----------------------------------------------------------------------------------------------------------------
def image_extensions() -> set[str]:
    """File suffixes that datasets' imagefolder reads (lower case, with the dot)."""
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    return {ext.lower() for ext in ImageFolder.EXTENSIONS}


def find_images(folder: str | Path) -> list[Path]:
    """All image files under `folder` (recursively), sorted; hidden folders such as .ipynb_checkpoints skipped."""
    folder = Path(folder)
    extensions = image_extensions()
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in extensions
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def find_corrupt_images(paths: Sequence[Path]) -> dict[Path, str]:
    """Image files Pillow cannot read, with the reason: checked up front so training does not crash at batch 517."""
    bad = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as err:  # UnidentifiedImageError, truncated files, bad CRCs, ...
            bad[path] = f"{type(err).__name__}: {err}"
    return bad


METADATA_EXAMPLE = '{"file_name": "0001.png", "text": "a caption"}'


def _metadata_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) for each row of a metadata.jsonl or metadata.csv; bad lines raise a
    ValueError."""
    import csv
    import io
    import json

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text ({err.reason} at byte {err.start}): save it as "
            "UTF-8 (datasets reads metadata files only in UTF-8)."
        ) from None
    if not text.strip():
        raise ValueError(
            f"{path} is empty: write one row per image, e.g. {METADATA_EXAMPLE}, or "
            "delete the file to load the images without captions."
        )
    if path.suffix == ".csv":
        return [(i + 2, row) for i, row in enumerate(csv.DictReader(io.StringIO(text)))]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"line {number} of {path} is not valid JSON ({err.msg}): {line[:80]!r}. "
                f"Each line must be one JSON object, e.g. {METADATA_EXAMPLE}."
            ) from None
        if not isinstance(row, dict):
            raise ValueError(
                f"line {number} of {path} is {type(row).__name__}, not a JSON object such as {METADATA_EXAMPLE}."
            )
        rows.append((number, row))
    return rows


def _refuse_repeated_names(path: Path, rows: list[tuple[int, dict]]) -> None:
    """One row per image: a file named twice would be loaded twice, once per caption."""
    first: dict[str, int] = {}
    for number, row in rows:
        name = str(row["file_name"])
        if name in first:
            raise ValueError(
                f"{path}: {name!r} is named on line {first[name]} and again on line "
                f"{number}. Keep one row per image (one caption each)."
            )
        first[name] = number


def check_metadata(folder: Path) -> None:
    """Check every metadata.jsonl/.csv under `folder` before datasets reads it: valid lines, a
    file_name in each row, and every named file present (datasets would keep rows for missing files,
    and training crash later)."""
    for path in sorted(folder.rglob("metadata.jsonl")) + sorted(folder.rglob("metadata.csv")):
        rows = _metadata_rows(path)
        unnamed = [n for n, row in rows if not row.get("file_name")]
        if unnamed:
            raise ValueError(
                f"{path}: line(s) {unnamed[:5]} have no 'file_name'. Every row names "
                f"its image, e.g. {METADATA_EXAMPLE}."
            )
        _refuse_repeated_names(path, rows)
        missing = [(n, row["file_name"]) for n, row in rows if not (path.parent / str(row["file_name"])).is_file()]
        if missing:
            listed = ", ".join(f"{name!r} (line {n})" for n, name in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise FileNotFoundError(
                f"{path} names {len(missing)} file(s) that are not in {path.parent}: "
                f"{listed}{more}. "
                "Fix those names, delete their lines, or add the images."
            )


def offline_dataset_dir() -> Path:
    """Folder of the shipped emoji dataset: $COURSE_DATA_DIR/emoji if set, else data/emoji in this repository."""
    return (
        data_root(
            f"{OFFLINE_NAME}/train/metadata.jsonl",
            what="emoji dataset",
            rebuild="python scripts/build_emoji_dataset.py",
        )
        / OFFLINE_NAME
    )


# ----------------------------------------------------------------------------------------------------------------
# Loading from local folders
# ----------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Hide datasets' progress bars for quick local loads (they would flood a notebook), then restore them."""
    from datasets.utils import disable_progress_bars, enable_progress_bars, is_progress_bar_enabled

    was_enabled = is_progress_bar_enabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            enable_progress_bars()


def _split_error(split: str, where: str, err: Exception) -> ValueError:
    found = re.findall(r"\[(.*)\]", str(err))
    available = f" Available splits: {found[-1]}." if found else ""
    return ValueError(
        f"split={split!r} does not exist in {where}.{available} Pass one of those as split=..., e.g. split='train' "
        "(slices such as 'train[:100]' also work)."
    )


def _is_split_error(err: Exception) -> bool:
    return isinstance(err, ValueError) and ("Unknown split" in str(err) or "Bad split" in str(err))


def drop_corrupt(dataset: "Dataset", bad: dict[Path, str], where: str) -> "Dataset":
    """Remove the rows whose image file is in `bad`, with a warning that names and counts them."""
    from datasets import Image as ImageFeature

    if not bad:
        return dataset
    bad_paths = {str(p.resolve()) for p in bad}
    column = dataset.cast_column("image", ImageFeature(decode=False))["image"]
    keep = [i for i, item in enumerate(column) if str(Path(item["path"]).resolve()) not in bad_paths]
    listed = "\n".join(f"    {p.name}: {why[:120]}" for p, why in list(bad.items())[:5])
    more = f"\n    ... and {len(bad) - 5} more" if len(bad) > 5 else ""
    warnings.warn(
        f"Skipped {len(dataset) - len(keep)} unreadable image file(s) in {where} "
        f"({len(bad)} found, {len(keep)} images kept):\n{listed}{more}\nDelete or re-download them to silence this.",
        CorruptImageWarning,
        stacklevel=_stacklevel_outside_course_utils(),
    )
    return dataset.select(keep)


def load_image_folder(folder: str | Path, split: str = "train", data_files: Any = None) -> "Dataset":
    """A folder of images (plus optional metadata.jsonl/.csv captions) via datasets' imagefolder; corrupt files
    skipped."""
    from datasets import load_dataset
    from datasets.data_files import EmptyDatasetError

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder at {str(folder)!r} (resolved: {folder.resolve()}). Check the path.")
    images = find_images(folder)
    if not images:
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise FileNotFoundError(
            f"No images in {folder}: found {found or 'nothing'}. imagefolder reads files such as .png, .jpg, .jpeg, "
            ".webp (in the folder or its subfolders, e.g. train/), with an optional metadata.jsonl holding a "
            "'file_name' and a 'text' column for captions."
        )
    bad = find_corrupt_images(images)
    if len(bad) == len(images):
        listed = "\n".join(f"    {p.name}: {why[:120]}" for p, why in list(bad.items())[:5])
        raise ValueError(
            f"None of the {len(images)} image files in {folder} can be read:\n"
            f"{listed}\nRe-download or re-export them (Pillow must open them), then "
            "load the folder again."
        )
    check_metadata(folder)
    try:
        with quiet_datasets():
            if data_files is not None:
                dataset = load_dataset("imagefolder", data_files=data_files, split=split)
            else:
                dataset = load_dataset("imagefolder", data_dir=str(folder), split=split)
    except ValueError as err:
        if _is_split_error(err):
            raise _split_error(split, str(folder), err) from None
        raise
    except EmptyDatasetError as err:
        raise FileNotFoundError(f"imagefolder found no usable files in {folder}: {err}") from err
    return drop_corrupt(dataset, bad, str(folder))


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
        if _is_split_error(err):
            raise _split_error(split, str(folder), err) from None
        raise
    except FileNotFoundError as err:  # EmptyDatasetError and friends
        raise FileNotFoundError(f"No images and no data files (parquet, csv, jsonl) in {folder}: {err}") from err


def load_offline(split: str = "train") -> "Dataset":
    """The emoji dataset shipped in data/emoji (1,870 images, 64 px, captioned): needs no network at all."""
    folder = offline_dataset_dir()
    # Naming the files skips imagefolder's search through ~45 name patterns (5 s -> under 1 s on 2 cores).
    files = {"train": [str(folder / "train" / "*.png"), str(folder / "train" / "metadata.jsonl")]}
    try:
        return load_image_folder(folder, split, data_files=files)
    except ValueError as err:
        if "does not exist" in str(err):
            raise ValueError(f"{err} The shipped {OFFLINE_NAME!r} dataset has one split, 'train'.") from None
        raise


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
        if _is_split_error(err):
            raise _split_error(split, repo_id, err) from None
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


# ----------------------------------------------------------------------------------------------------------------
# Preprocessing and batching
# ----------------------------------------------------------------------------------------------------------------
def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL image as 3-channel RGB: transparency composited on `background`, grayscale/palette/16-bit converted."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit PNGs and float images: scale to 8 bits
        import numpy as np

        values = np.asarray(image, dtype=np.float32)
        scale = 255.0 if image.mode == "F" and values.max() <= 1.0 else (1 / 257 if image.mode != "F" else 1.0)
        image = Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


class ToRGB:
    """A torchvision-style transform wrapping to_rgb (a class, not a lambda, so DataLoader workers can pickle it)."""

    def __init__(self, background: tuple[int, int, int] = (255, 255, 255)) -> None:
        self.background = tuple(background)

    def __call__(self, image: Image.Image) -> Image.Image:
        return to_rgb(image, self.background)

    def __repr__(self) -> str:
        return f"ToRGB(background={self.background})"


def preprocess(size: int, flip: bool = True, center_crop: bool = False):
    """The training transform: RGB, Resize to size x size, random horizontal flip, ToTensor, Normalize to [-1, 1].

    Normalize([0.5], [0.5]) computes (x - 0.5) / 0.5, turning ToTensor's [0, 1] into [-1, 1], the range the UNet
    is trained on. `center_crop=True` keeps the aspect ratio (resize the short side, then crop the centre).
    """
    from torchvision import transforms

    require_positive_int("size", size)
    resize = (
        [transforms.Resize(size), transforms.CenterCrop(size)] if center_crop else [transforms.Resize((size, size))]
    )
    flips = [transforms.RandomHorizontalFlip()] if flip else []
    return transforms.Compose([ToRGB(), *resize, *flips, transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])


class BatchTransform:
    """The function given to set_transform: a batch of rows -> {'images': [tensors], 'text': [captions]}."""

    def __init__(self, transform: Callable[[Image.Image], Any]) -> None:
        self.transform = transform

    def __call__(self, examples: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"images": [self.transform(image) for image in examples["image"]]}
        if "text" in examples:
            out["text"] = list(examples["text"])
        return out


def with_transform(dataset: "Dataset", size: int, flip: bool = True, center_crop: bool = False) -> "Dataset":
    """A copy of `dataset` whose rows come out preprocessed, {'images': tensor, 'text': ...}, computed on the fly."""
    if dataset.format.get("type") == "custom":
        raise ValueError(
            "This dataset already has a transform (from with_transform or set_transform): pass the "
            "dataset as loaded, before with_transform, or call dataset.reset_format() first."
        )
    if "image" not in dataset.column_names:
        raise ValueError(
            f"with_transform needs an 'image' column; this dataset has {dataset.column_names}. "
            "Load it with load_image_dataset(), which names the column for you."
        )
    # with_transform = set_transform on a new Dataset object over the same Arrow data: `dataset` itself is unchanged.
    return dataset.with_transform(BatchTransform(preprocess(size, flip, center_crop)))


def make_dataloader(
    dataset,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    collate_fn: Callable | None = None,
) -> "DataLoader":
    """A DataLoader with a seeded shuffle; num_workers=0 by default because worker processes hang in notebooks.
    (The trainer passes its own collate_fn, and accelerate's seedable sampler then sets the order per epoch.)"""
    import torch

    require_positive_int("batch_size", batch_size)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers={num_workers!r}: expected 0 (load in this process) or a positive whole number.")
    if len(dataset) == 0:
        raise ValueError("The dataset is empty: there is nothing to batch.")
    first = dataset[0]
    if isinstance(first, dict) and any(isinstance(v, Image.Image) for v in first.values()):
        raise TypeError(
            "The dataset still yields PIL images, which cannot be stacked into a batch. "
            "Apply the transform first: dataset = with_transform(dataset, size)."
        )
    if num_workers > 0 and _in_notebook():
        warnings.warn(
            f"num_workers={num_workers} in a notebook: worker processes can freeze or fail with "
            '"Can\'t get attribute ... on __main__". If that happens, use num_workers=0.',
            stacklevel=2,
        )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers,
        collate_fn=collate_fn,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where DataLoader worker processes misbehave)."""
    import sys

    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"
