"""The shipped emoji load with the most natural call: datasets must not read split names out of file
names."""

from __future__ import annotations

import json
import re

from course_utils.folders import offline_dataset_dir

TRAIN = offline_dataset_dir() / "train"
# datasets treats a file name holding one of these words as part of that split (see
# datasets.data_files).
SPLIT_WORDS = re.compile(r"(train|training|test|testing|eval|evaluation|valid|validation|val|dev)", re.I)


def test_plain_imagefolder_call_reads_every_emoji_with_its_caption():
    from datasets import load_dataset

    loaded = load_dataset("imagefolder", data_dir=str(TRAIN))
    assert list(loaded) == ["train"]
    assert len(loaded["train"]) == 1870 and "text" in loaded["train"].column_names
    assert loaded["train"][0]["text"] == "grinning face"


def test_file_names_hold_no_split_word_and_match_the_metadata():
    rows = [json.loads(line) for line in (TRAIN / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    pngs = sorted(p.name for p in TRAIN.glob("*.png"))
    assert sorted(r["file_name"] for r in rows) == pngs and len(pngs) == 1870
    assert not [name for name in pngs if SPLIT_WORDS.search(name)]
    first = rows[0]
    assert first["file_name"] == "0000_1f600.png" and first["codepoints"] == "U+1F600"
