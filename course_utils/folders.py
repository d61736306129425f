"""Folders of images on disk, read one way everywhere: the list of image suffixes, the one parser of metadata.jsonl
(or .csv) captions and its checks, and the one reader of a folder, which gives a datasets.Dataset (lessons 04-05)
or a tensor with captions (lessons 07-08). The shipped emoji dataset in data/emoji is such a folder."""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from PIL import Image

from course_utils.checks.values import did_you_mean
from course_utils.images import to_rgb
from course_utils.paths import data_root

if TYPE_CHECKING:  # importing datasets/torch is slow: done inside the functions that need them
    import torch
    from datasets import Dataset

OFFLINE_NAME = "emoji"
# Columns that hold a caption in common datasets; renamed to "text" so every lesson reads the same name.
CAPTION_COLUMNS = ("text", "caption", "captions", "prompt", "description", "sentence")
# Copied from datasets' ImageFolder.EXTENSIONS (what imagefolder reads), so that finding images needs no datasets
# import; tests/test_data.py::test_image_suffixes_are_imagefolders keeps the two equal.
IMAGE_SUFFIXES = frozenset(
    ".apng .blp .bmp .bufr .bw .cur .dcx .dds .dib .emf .eps .fit .fits .flc .fli .ftc .ftu .gbr .gif .grib .icb "
    ".icns .ico .iim .im .j2c .j2k .jfif .jp2 .jpc .jpe .jpeg .jpf .jpg .jpx .mpeg .mpg .msp .pbm .pcd .pcx .pgm "
    ".png .pnm .ppm .ps .psd .pxr .ras .rgb .rgba .sgi .tga .tif .tiff .vda .vst .webp .wmf .xbm .xpm".split()
)
METADATA_EXAMPLE = '{"file_name": "0001.png", "text": "a caption"}'


class CorruptImageWarning(UserWarning):
    """Some image files could not be read and were left out of the dataset."""


def _stacklevel_outside_course_utils() -> int:
    """The warnings stacklevel of the first caller outside course_utils, so a warning points at the learner's line."""
    import sys

    frame, level = sys._getframe(1), 1  # frame 1 (stacklevel 1): the function that is about to warn
    while frame is not None and frame.f_globals.get("__name__", "").startswith("course_utils"):
        frame, level = frame.f_back, level + 1
    return level


# ----------------------------------------------------------------------------------------------------------------
# Finding and checking images on disk
# ----------------------------------------------------------------------------------------------------------------
def find_images(folder: str | Path) -> list[Path]:
    """All image files under `folder` (recursively), sorted; hidden folders such as .ipynb_checkpoints skipped."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def require_images(folder: str | Path) -> tuple[Path, list[Path]]:
    """The folder and its images (find_images), with a clear error when it is not a folder or holds no image."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder at {str(folder)!r} (resolved: {folder.resolve()}). Check the path.")
    images = find_images(folder)
    if not images:
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise FileNotFoundError(
            f"No images in {folder}: found {found or 'nothing'}. A folder of images holds files such as .png, .jpg, "
            ".jpeg, .webp (in the folder or its subfolders, e.g. train/), with an optional metadata.jsonl holding a "
            "'file_name' and a 'text' column for captions."
        )
    return folder, images


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


# ----------------------------------------------------------------------------------------------------------------
# Captions: metadata.jsonl / metadata.csv
# ----------------------------------------------------------------------------------------------------------------
def read_metadata(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, row) for each row of a metadata.jsonl or metadata.csv; bad lines raise a ValueError that names
    the file and the line. The one parser of these files in the course."""
    import csv
    import io
    import json

    path = Path(path)
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


def _key(path: Path) -> str:
    """One spelling of a path, for looking an image up by where a metadata row points ('./a.png' == 'a.png')."""
    return os.path.normpath(path)


def check_metadata(folder: str | Path) -> dict[str, dict]:
    """Check every metadata.jsonl/.csv under `folder` before anything reads it: valid lines, a file_name in each row,
    and every named file present (datasets would keep rows for missing files, and training crash later). Returns
    the rows by the path of the image they describe (as _key writes it)."""
    folder = Path(folder)
    by_image: dict[str, dict] = {}
    for path in sorted(folder.rglob("metadata.jsonl")) + sorted(folder.rglob("metadata.csv")):
        rows = read_metadata(path)
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
        by_image.update({_key(path.parent / str(row["file_name"])): row for _, row in rows})
    return by_image


def caption_of(row: dict) -> str | None:
    """A row's caption: its first column named like a caption (CAPTION_COLUMNS), or None."""
    return next((str(row[c]) for c in CAPTION_COLUMNS if row.get(c) is not None), None)


def _captions(images: list[Path], rows: dict[str, dict], default: str | None) -> list[str]:
    """Each image's caption: its metadata row, else a .txt file of the same name, else `default` ('' if None)."""
    captions = []
    for image in images:
        row = rows.get(_key(image))
        text_file = image.with_suffix(".txt")
        if row is not None and caption_of(row) is not None:
            captions.append(caption_of(row))
        elif text_file.is_file():
            captions.append(text_file.read_text(encoding="utf-8").strip())
        else:
            captions.append(default or "")
    return captions


# ----------------------------------------------------------------------------------------------------------------
# The shipped emoji dataset
# ----------------------------------------------------------------------------------------------------------------
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


def emoji_metadata(folder: str | Path | None = None) -> tuple[Path, list[dict]]:
    """The shipped emoji's train/ folder and its metadata.jsonl rows (file_name, text, ...), in file order."""
    train = Path(folder) if folder is not None else offline_dataset_dir() / "train"
    return train, [row for _, row in read_metadata(train / "metadata.jsonl")]


def load_emoji(name: str, size: int | None = None) -> Image.Image:
    """One shipped emoji as an RGB PIL image, by its caption ("red apple"), resized to `size` px if given."""
    train, rows = emoji_metadata()
    by_name = {row["text"]: row["file_name"] for row in rows}
    if name not in by_name:
        raise KeyError(
            f"No emoji named {name!r} in {train}.{did_you_mean(name, list(by_name))} "
            "Names are the Unicode names in lower case, e.g. 'red apple', 'rocket', 'grinning face'."
        )
    image = to_rgb(Image.open(train / by_name[name]))
    return image if size is None else image.resize((size, size), Image.Resampling.BICUBIC)


def load_emoji_tensors(folder: str | Path | None = None) -> tuple["torch.Tensor", list[str]]:
    """All shipped emoji as one float tensor in [-1, 1] (N, 3, 64, 64) and their captions, in file order."""
    return load_image_tensors(folder if folder is not None else offline_dataset_dir() / "train")


# ----------------------------------------------------------------------------------------------------------------
# Reading a folder
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


def split_error(split: str, where: str, err: Exception) -> ValueError:
    """datasets' error for a split that does not exist, turned into one that lists the splits there are."""
    found = re.findall(r"\[(.*)\]", str(err))
    available = f" Available splits: {found[-1]}." if found else ""
    return ValueError(
        f"split={split!r} does not exist in {where}.{available} Pass one of those as split=..., e.g. split='train' "
        "(slices such as 'train[:100]' also work)."
    )


def is_split_error(err: Exception) -> bool:
    """Whether datasets raised `err` for a split that does not exist."""
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

    folder, images = require_images(folder)
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
        if is_split_error(err):
            raise split_error(split, str(folder), err) from None
        raise
    except EmptyDatasetError as err:
        raise FileNotFoundError(f"imagefolder found no usable files in {folder}: {err}") from err
    return drop_corrupt(dataset, bad, str(folder))


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


def _pixels(path: Path, size: int | None) -> Image.Image:
    """One image as RGB (transparency on white, as in the dataset path), centre-cropped to size x size if given."""
    from PIL import ImageOps

    try:
        image = to_rgb(Image.open(path))
    except Exception as err:
        raise ValueError(
            f"{path} cannot be read as an image ({type(err).__name__}: {err}). Delete or re-export it."
        ) from None
    return image if size is None or image.size == (size, size) else ImageOps.fit(image, (size, size))


def load_image_tensors(
    folder: str | Path, size: int | None = None, default_caption: str | None = None
) -> tuple["torch.Tensor", list[str]]:
    """The images of a folder (the same files and checks as load_image_folder) as one tensor in [-1, 1]
    (N, 3, size, size), centre-cropped to `size` if given, and their captions: from metadata.jsonl/.csv, else a .txt
    file of the same name, else `default_caption`."""
    import numpy as np
    import torch

    folder, files = require_images(folder)
    captions = _captions(files, check_metadata(folder), default_caption)
    if not all(captions):
        missing = [f.name for f, c in zip(files, captions) if not c][:5]
        raise ValueError(
            f"No caption for {missing} in {folder}: add a metadata.jsonl line, a .txt file "
            "of the same name, or pass default_caption (e.g. 'a photo of sks dog')."
        )
    pixels = [_pixels(f, size) for f in files]
    sizes = sorted({p.size for p in pixels})
    if len(sizes) > 1:
        raise ValueError(
            f"The images in {folder} have {len(sizes)} sizes ({sizes[:3]} ...): pass size=... to crop them all to "
            "one square size."
        )
    images = torch.from_numpy(np.stack([np.asarray(p) for p in pixels])).permute(0, 3, 1, 2)
    return images.float() / 127.5 - 1.0, captions
