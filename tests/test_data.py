"""Datasets from end to end: the shipped dataset and local folders (course_utils.folders), the hub fallback chain
(course_utils.hub_datasets; hub failures simulated, no network), bad input, RGB conversion (course_utils.images), and
preprocessing and the DataLoader (course_utils.data)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils import data, folders, hub_datasets, images

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "emoji"


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
def make_folder(folder: Path, n: int = 4, captions: str | None = "text", modes=("RGB",)) -> Path:
    """A tiny imagefolder: n coloured 16 px images in the given modes, with captions under `captions` (or none)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        mode = modes[i % len(modes)]
        image = Image.new("RGB", (16, 12), (40 * i, 200, 255 - 40 * i)).convert(mode)
        name = f"img{i}.png"
        image.save(folder / name)
        rows.append({"file_name": name, captions or "x": f"picture {i}"})
    if captions:
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def parquet_branch(root: Path, split: str = "train", n: int = 3) -> Path:
    """A folder laid out like a repo's refs/convert/parquet revision: default/<split>/0000.parquet."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    images = [Image.new("RGB", (8, 8), (i * 60, 0, 0)) for i in range(n)]
    ds = Dataset.from_dict(
        {"img": images, "caption": [f"red {i}" for i in range(n)]},
        features=Features({"img": ImageFeature(), "caption": Value("string")}),
    )
    (root / "default" / split).mkdir(parents=True)
    ds.to_parquet(str(root / "default" / split / "0000.parquet"))
    return root


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything tries the hub probe or a non-cache download."""
    from course_utils import hub

    def probe(*args, **kwargs):
        raise AssertionError("hub_reachable must not be called here")

    monkeypatch.setattr(hub, "hub_reachable", probe)
    monkeypatch.setattr(
        hub_datasets, "from_parquet_branch", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network step ran"))
    )


# ---------------------------------------------------------------------------------------------------------------
# the shipped dataset
# ---------------------------------------------------------------------------------------------------------------
def test_shipped_dataset_files_match_metadata_and_fit_the_budget():
    rows = [
        json.loads(line) for line in (SHIPPED / "train" / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    pngs = sorted(p.name for p in (SHIPPED / "train").glob("*.png"))
    assert len(rows) >= 1000
    assert sorted(r["file_name"] for r in rows) == pngs
    assert all(r["text"].strip() for r in rows)
    assert len({r["text"] for r in rows}) == len(rows), "captions should be distinct"
    megabytes = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file()) / 1e6
    assert megabytes < 20
    assert (SHIPPED / "LICENSE").read_text().startswith("\n") or "Apache License" in (SHIPPED / "LICENSE").read_text()
    readme = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert "Apache" in readme and "Noto Color Emoji" in readme and "scripts/build_emoji_dataset.py" in readme


def test_load_shipped_dataset():
    started = time.perf_counter()
    ds = hub_datasets.load_image_dataset("emoji")
    assert len(ds) >= 1000
    assert {"image", "text"} <= set(ds.column_names)
    first = ds[0]
    assert first["image"].size == (64, 64) and first["image"].mode == "RGB"
    assert first["text"] == "grinning face"
    colours = {ds[i]["image"].resize((1, 1)).getpixel((0, 0)) for i in range(0, len(ds), 200)}
    assert len(colours) > 5, "the images should differ from one another"
    assert time.perf_counter() - started < 30


def test_shipped_dataset_has_only_a_train_split():
    with pytest.raises(ValueError, match=r"split='test' does not exist.*'train'"):
        hub_datasets.load_image_dataset("emoji", split="test")
    assert len(hub_datasets.load_image_dataset("emoji", split="train[:10]")) == 10


def test_missing_shipped_dataset_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="COURSE_DATA_DIR.*build_emoji_dataset"):
        hub_datasets.load_image_dataset("emoji")


# ---------------------------------------------------------------------------------------------------------------
# the fallback chain (hub failures simulated with monkeypatch; nothing touches the network)
# ---------------------------------------------------------------------------------------------------------------
def test_offline_short_name_falls_back_to_shipped_dataset_fast(no_network, capsys):
    started = time.perf_counter()
    ds = hub_datasets.load_image_dataset("flowers", hub_ok=False)
    out = capsys.readouterr().out
    assert "huggan/flowers-102-categories" in out
    assert "3. parquet files" in out and "skipped" in out
    assert "INSTEAD of huggan/flowers-102-categories" in out
    assert len(ds) == len(hub_datasets.load_image_dataset("emoji", verbose=False))
    assert time.perf_counter() - started < 15  # the shipped load itself; every hub step skips or fails at once


def test_hub_ok_none_respects_offline_mode_without_probing(no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds, attempts = hub_datasets.try_steps(
        hub_datasets.hub_steps("a/b", "train", hub_ok=hub_datasets._hub_ok_now()), verbose=False
    )
    assert ds is None and [a.outcome for a in attempts][2:] == ["skipped", "skipped"]


def test_no_fallback_raises_with_every_attempt_listed(no_network):
    with pytest.raises(hub_datasets.DatasetUnavailableError) as err:
        hub_datasets.load_image_dataset("someone/not-here", hub_ok=False, fallback=False)
    message = str(err.value)
    for step in ("1. load_dataset", "2. snapshot_download", "3. parquet", "4. local imagefolder"):
        assert step in message
    assert "no folder at" in message


def test_snapshot_download_fallback_loads_the_local_copy(monkeypatch, tmp_path, capsys):
    import huggingface_hub

    folder = make_folder(tmp_path / "snapshot", n=3)
    calls = []

    def fake_snapshot(repo_id, repo_type=None, local_files_only=False, **kwargs):
        calls.append((repo_id, repo_type, local_files_only, kwargs.get("revision")))
        return str(folder)

    monkeypatch.setattr(
        hub_datasets, "from_hub", lambda repo_id, split: (_ for _ in ()).throw(ConnectionError("mirror timed out"))
    )
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    ds = hub_datasets.load_image_dataset("owner/photos", hub_ok=True)
    out = capsys.readouterr().out
    assert len(ds) == 3 and ds[0]["text"] == "picture 0"
    assert calls == [("owner/photos", "dataset", False, None)]
    assert "ConnectionError: mirror timed out" in out
    assert "dataset 'owner/photos': snapshot_download -> 3 images" in out


def test_script_dataset_is_explained_and_parquet_branch_used(monkeypatch, tmp_path, capsys):
    import huggingface_hub

    branch = parquet_branch(tmp_path / "parquet", n=3)

    def fake_hub(repo_id, split):
        raise RuntimeError(f"Dataset scripts are no longer supported, but found {repo_id.split('/')[1]}.py")

    def fake_snapshot(repo_id, repo_type=None, revision=None, allow_patterns=None, **kwargs):
        if revision != "refs/convert/parquet":
            raise OSError("snapshot failed: 502 Bad Gateway")
        assert "*/train/*.parquet" in allow_patterns
        return str(branch)

    monkeypatch.setattr(hub_datasets, "from_hub", fake_hub)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    ds = hub_datasets.load_image_dataset("owner/old-script-set", hub_ok=True)
    out = capsys.readouterr().out
    assert "old-script-set.py" in out and "no longer runs loading scripts" in out
    assert "502 Bad Gateway" in out
    assert ds.column_names == ["image", "text"] and ds[2]["text"] == "red 2"
    assert isinstance(ds[0]["image"], Image.Image)


def test_parquet_branch_without_the_split_fails_clearly(monkeypatch, tmp_path):
    import huggingface_hub

    branch = parquet_branch(tmp_path / "parquet", split="train")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(branch))
    with pytest.raises(FileNotFoundError, match="no files for split 'validation'"):
        hub_datasets.from_parquet_branch("owner/x", "validation")


def test_local_copy_is_used_when_the_hub_is_down(no_network, tmp_path, capsys):
    copy = make_folder(tmp_path / "my-copy", n=5)
    ds = hub_datasets.load_image_dataset("owner/anime-faces", hub_ok=False, local_dir=copy)
    assert len(ds) == 5
    assert "4. local imagefolder copy" in capsys.readouterr().out


def test_nonexistent_repo_with_hub_up_is_an_error_not_a_fallback(monkeypatch):
    from datasets.exceptions import DatasetNotFoundError

    def fake_hub(repo_id, split):
        raise DatasetNotFoundError(f"Dataset '{repo_id}' doesn't exist on the Hub or cannot be accessed.")

    monkeypatch.setattr(hub_datasets, "from_hub", fake_hub)
    with pytest.raises(DatasetNotFoundError, match="doesn't exist"):
        hub_datasets.load_image_dataset("owner/typo-in-name", hub_ok=True)


def test_missing_split_on_the_hub_stops_the_chain(monkeypatch):
    def fake_load_dataset(repo_id, split=None, **kwargs):
        raise ValueError("Unknown split \"tset\". Should be one of ['train', 'test'].")

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(ValueError, match=r"split='tset' does not exist in owner/x.*'train', 'test'"):
        hub_datasets.load_image_dataset("owner/x", split="tset", hub_ok=True)


# ---------------------------------------------------------------------------------------------------------------
# bad names, folders and files
# ---------------------------------------------------------------------------------------------------------------
def test_unknown_short_name_suggests_the_close_one():
    with pytest.raises(ValueError, match="Unknown dataset 'flower'. Did you mean 'flowers'"):
        hub_datasets.load_image_dataset("flower", hub_ok=False)


def test_missing_path_and_file_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="No folder at"):
        hub_datasets.load_image_dataset(str(tmp_path / "nope" / "deeper"))
    image = tmp_path / "one.png"
    Image.new("RGB", (4, 4)).save(image)
    with pytest.raises(ValueError, match="is a file"):
        hub_datasets.load_image_dataset(str(image))


def test_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FileNotFoundError, match=r"No images in .*notes\.txt"):
        hub_datasets.load_image_dataset(str(tmp_path))


def test_corrupt_images_are_skipped_counted_and_named(tmp_path):
    folder = make_folder(tmp_path / "imgs", n=4)
    (folder / "img1.png").write_bytes(b"this is not a png")
    (folder / "img3.png").write_bytes((folder / "img0.png").read_bytes()[:40])  # truncated
    with pytest.warns(UserWarning, match=r"Skipped 2 unreadable image file\(s\).*2 images kept") as record:
        ds = hub_datasets.load_image_dataset(str(folder))
    assert "img1.png" in str(record[0].message) and "img3.png" in str(record[0].message)
    assert sorted(row["text"] for row in ds) == ["picture 0", "picture 2"]


def test_caption_column_is_renamed_and_hidden_folders_ignored(tmp_path):
    folder = make_folder(tmp_path / "imgs", n=3, captions="caption")
    (folder / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (4, 4)).save(folder / ".ipynb_checkpoints" / "stray.png")
    assert len(folders.find_images(folder)) == 3
    ds = hub_datasets.load_image_dataset(str(folder))
    assert "text" in ds.column_names and "caption" not in ds.column_names


def test_image_suffixes_are_imagefolders():
    """folders.IMAGE_SUFFIXES is a copy of the list imagefolder reads, so finding images needs no datasets import."""
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    assert folders.IMAGE_SUFFIXES == {ext.lower() for ext in ImageFolder.EXTENSIONS}


def test_the_tensor_reader_reads_what_the_dataset_reader_reads(tmp_path):
    """load_image_tensors and load_image_folder: the same files, captions and pixels (transparency on white)."""
    folder = make_folder(tmp_path / "imgs", n=3, captions="caption", modes=("RGB", "RGBA", "L"))
    (folder / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (4, 4)).save(folder / ".ipynb_checkpoints" / "stray.png")
    dataset = hub_datasets.standardize(folders.load_image_folder(folder))
    tensors, captions = folders.load_image_tensors(folder)
    assert captions == dataset["text"] and tensors.shape == (3, 3, 12, 16)
    from_dataset = torch.stack([torch.from_numpy(np.array(images.to_rgb(im))) for im in dataset["image"]])
    assert torch.equal(tensors, from_dataset.permute(0, 3, 1, 2).float() / 127.5 - 1.0)
    with pytest.raises(ValueError, match="have 2 sizes"):
        Image.new("RGB", (8, 8)).save(folder / "img9.png")
        folders.load_image_tensors(folder, default_caption="x")


def test_the_shipped_emoji_as_tensors():
    tensors, captions = folders.load_emoji_tensors()
    _, rows = folders.emoji_metadata()
    assert tensors.shape == (len(rows), 3, 64, 64) and captions == [row["text"] for row in rows]
    assert tensors.min() >= -1 and tensors.max() <= 1


def test_standardize_requires_an_image_column():
    from datasets import Dataset

    with pytest.raises(ValueError, match="no image column"):
        hub_datasets.standardize(Dataset.from_dict({"text": ["a"]}))


# ---------------------------------------------------------------------------------------------------------------
# preprocessing
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "I;16", "CMYK", "1"])
def test_to_rgb_handles_every_mode(mode):
    source = Image.new("RGB", (6, 6), (200, 100, 50))
    image = source.convert("I;16") if mode == "I;16" else source.convert(mode)
    assert images.to_rgb(image).mode == "RGB"


def test_transparency_is_composited_on_white():
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert images.to_rgb(clear).getpixel((0, 0)) == (255, 255, 255)
    assert images.to_rgb(half).getpixel((0, 0)) == (127, 127, 127)
    palette = Image.new("P", (4, 4), 0)
    palette.info["transparency"] = 0
    assert images.to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_grayscale_keeps_its_brightness():
    image = Image.new("I;16", (4, 4), 65535)
    assert images.to_rgb(image).getpixel((0, 0)) == (255, 255, 255)


def test_preprocess_shape_and_range():
    image = Image.new("RGB", (40, 30), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 30))
    x = data.preprocess(16, flip=False)(image)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert x[0, 0, 0].item() == 1.0  # white on the left: no flip
    cropped = data.preprocess(16, flip=False, center_crop=True)(image)
    assert cropped.shape == (3, 16, 16)
    with pytest.raises(ValueError, match="size=0"):
        data.preprocess(0)


def test_flip_happens_about_half_the_time():
    image = Image.new("RGB", (8, 8), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 4, 8))
    transform = data.preprocess(8, flip=True)
    torch.manual_seed(0)
    left_white = [transform(image)[0, 0, 0].item() == 1.0 for _ in range(200)]
    assert 60 < sum(left_white) < 140


def test_with_transform_gives_tensors_and_leaves_the_original_alone(tmp_path):
    folder = make_folder(tmp_path / "imgs", n=4, modes=("RGB", "L", "RGBA", "P"))
    ds = hub_datasets.load_image_dataset(str(folder), verbose=False)
    ready = data.with_transform(ds, 8)
    row = ready[1]
    assert set(row) == {"images", "text"} and row["images"].shape == (3, 8, 8)
    assert isinstance(ds[1]["image"], Image.Image), "the original dataset must be unchanged"
    loader = data.make_dataloader(ready, batch_size=3, shuffle=False)
    batch = next(iter(loader))
    assert batch["images"].shape == (3, 3, 8, 8) and batch["text"] == ["picture 0", "picture 1", "picture 2"]
    assert -1.0 <= batch["images"].min() and batch["images"].max() <= 1.0


def test_dataloader_shuffle_is_seeded(tmp_path):
    ds = data.with_transform(
        hub_datasets.load_image_dataset(str(make_folder(tmp_path / "imgs", n=8)), verbose=False), 8, flip=False
    )
    order = lambda seed: [t for b in data.make_dataloader(ds, 4, seed=seed) for t in b["text"]]  # noqa: E731
    assert order(0) == order(0)
    assert sorted(order(0)) == sorted(order(1)) and order(0) != order(1)


def test_dataloader_rejects_bad_input(tmp_path):
    ds = hub_datasets.load_image_dataset(str(make_folder(tmp_path / "imgs", n=2)), verbose=False)
    with pytest.raises(TypeError, match="with_transform"):
        data.make_dataloader(ds, 2)
    ready = data.with_transform(ds, 8)
    with pytest.raises(ValueError, match="batch_size=0"):
        data.make_dataloader(ready, 0)
    with pytest.raises(ValueError, match="num_workers=-1"):
        data.make_dataloader(ready, 2, num_workers=-1)
    with pytest.raises(ValueError, match="already has a transform"):
        data.with_transform(ready, 8)
    with pytest.raises(ValueError, match="with_transform needs an 'image' column"):
        data.with_transform(ds.rename_column("image", "picture"), 8)


# ---------------------------------------------------------------------------------------------------------------
# the generator script (needs the Debian font and Unicode data; skipped where they are not installed)
# ---------------------------------------------------------------------------------------------------------------
def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_emoji_dataset", SHIPPED.parents[1] / "scripts" / "build_emoji_dataset.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_script_file_names_are_row_and_code_points():
    script = _script()
    assert script.file_name(0, (0x1F600,)) == "0000_1f600.png"
    # test tube: no word that a split could match
    assert script.file_name(1331, (0x1F9EA,)) == "1331_1f9ea.png"


def test_script_regenerates_the_shipped_images(tmp_path):
    script = _script()
    if not (script.FONT.is_file() and script.EMOJI_TEST.is_file()):
        pytest.skip("apt-get install fonts-noto-color-emoji unicode-data to test the generator")
    assert script.build(tmp_path, limit=4) == 4
    rows = [json.loads(line) for line in (tmp_path / "train" / "metadata.jsonl").read_text().splitlines()]
    shipped = [json.loads(line) for line in (SHIPPED / "train" / "metadata.jsonl").read_text().splitlines()][:4]
    assert rows == shipped
    for row in rows:
        new = torch.from_numpy(np.asarray(Image.open(tmp_path / "train" / row["file_name"]), dtype=np.float32))
        old = torch.from_numpy(np.asarray(Image.open(SHIPPED / "train" / row["file_name"]), dtype=np.float32))
        assert (new - old).abs().max() <= 2
