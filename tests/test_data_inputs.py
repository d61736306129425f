"""A folder whose metadata or images are broken fails at load time with the file and line named,
instead of later, deep in PIL or Arrow, or with advice about batch sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from course_utils.folders import load_image_folder
from course_utils.hub_datasets import load_image_dataset


def _images(folder: Path, n: int = 4) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(folder / f"{i}.png")
    return folder


def _metadata(folder: Path, lines: list[str]) -> Path:
    (folder / "metadata.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder


def test_metadata_naming_missing_files_is_refused(tmp_path):
    rows = [json.dumps({"file_name": f"{i}.png", "text": f"picture {i}"}) for i in range(6)]
    folder = _metadata(_images(tmp_path / "pics"), rows)
    with pytest.raises(
        FileNotFoundError,
        match=r"names 2 file\(s\) that are not in .*'4.png' \(line 5\), "
        r"'5.png' \(line 6\)",
    ):
        load_image_folder(folder)


def test_malformed_metadata_line_is_named(tmp_path):
    folder = _metadata(
        _images(tmp_path / "pics"),
        ['{"file_name": "0.png", "text": "a"}', '{"file_name": "1.png", text: b}'],
    )
    with pytest.raises(ValueError, match=r"line 2 of .*metadata.jsonl is not valid JSON"):
        load_image_dataset(str(folder))


@pytest.mark.parametrize(
    "line, message",
    [
        ('["0.png", "a"]', "is list, not a JSON object"),
        ('{"text": "a caption"}', "have no 'file_name'"),
    ],
)
def test_metadata_rows_that_are_not_objects_with_a_file_name(tmp_path, line, message):
    folder = _metadata(_images(tmp_path / "pics", 1), [line])
    with pytest.raises(ValueError, match=message):
        load_image_folder(folder)


def test_folder_of_only_corrupt_images_says_so(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"None of the 3 image files in .* can be read") as err:
        load_image_dataset(str(folder))
    assert "batch" not in str(err.value)


def test_metadata_csv_is_checked_too(tmp_path):
    folder = _images(tmp_path / "pics", 2)
    (folder / "metadata.csv").write_text("file_name,text\n0.png,a\n7.png,b\n")
    with pytest.raises(FileNotFoundError, match=r"'7.png' \(line 3\)"):
        load_image_folder(folder)


def test_empty_metadata_file_is_explained(tmp_path):
    folder = _images(tmp_path / "pics")
    (folder / "metadata.jsonl").write_text("\n")
    with pytest.raises(ValueError, match=r"metadata.jsonl is empty: write one row per image"):
        load_image_folder(folder)


def test_metadata_not_in_utf8_is_explained(tmp_path):
    folder = _images(tmp_path / "pics", 1)
    line = '{"file_name": "0.png", "text": "caf\xe9"}\n'
    (folder / "metadata.jsonl").write_bytes(line.encode("latin-1"))
    with pytest.raises(ValueError, match=r"metadata.jsonl is not UTF-8 text .* save it as UTF-8"):
        load_image_folder(folder)


def test_image_named_twice_in_the_metadata_is_refused(tmp_path):
    rows = [
        '{"file_name": "0.png", "text": "a"}',
        '{"file_name": "0.png", "text": "b"}',
        '{"file_name": "1.png", "text": "c"}',
    ]
    folder = _metadata(_images(tmp_path / "pics", 2), rows)
    with pytest.raises(ValueError, match=r"'0.png' is named on line 1 and again on line 2"):
        load_image_folder(folder)
