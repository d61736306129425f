"""The datasets lesson 05's trainer knows by name: the loader's names plus 'emoji-faces', the yellow face emoji of
the shipped set (about 100 similar pictures, as google/ddpm-cat-256 was trained on cat faces only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset

EMOJI_FACES = "emoji-faces"

# The face subgroups of Unicode's "Smileys & Emotion" group whose emoji are yellow round faces.
FACE_SUBGROUPS = frozenset(
    {
        "face-smiling",
        "face-affection",
        "face-tongue",
        "face-hand",
        "face-neutral-skeptical",
        "face-sleepy",
        "face-unwell",
        "face-hat",
        "face-glasses",
        "face-concerned",
    }
)
# In those subgroups, but not a yellow face (a cloud, a dotted outline, red, blue or green).
NOT_YELLOW = frozenset({"dotted line face", "face in clouds", "hot face", "cold face", "nauseated face"})
# In "face-negative" (mostly red, purple or skulls), but yellow.
YELLOW_NEGATIVE = frozenset({"face with steam from nose", "angry face"})


def is_yellow_face(row: dict[str, Any]) -> bool:
    """Whether one row of data/emoji's metadata (its 'text' caption and 'subgroup') is a yellow face emoji."""
    caption, subgroup = row.get("text"), row.get("subgroup")
    if subgroup in FACE_SUBGROUPS:
        return caption not in NOT_YELLOW
    return subgroup == "face-negative" and caption in YELLOW_NEGATIVE


def emoji_faces(dataset: "Dataset") -> "Dataset":
    """The rows of the shipped emoji dataset that are yellow faces (needs its 'text' and 'subgroup' columns)."""
    missing = {"text", "subgroup"} - set(dataset.column_names)
    if missing:
        raise ValueError(
            f"emoji_faces needs the shipped emoji dataset's 'text' and 'subgroup' columns; this dataset lacks "
            f"{sorted(missing)} (columns: {dataset.column_names}). Load it with load_image_dataset('emoji')."
        )
    keep = [
        i
        for i, row in enumerate(zip(dataset["text"], dataset["subgroup"]))
        if is_yellow_face({"text": row[0], "subgroup": row[1]})
    ]
    return dataset.select(keep)


def load_training_dataset(name: str, hub_ok: bool | None = None, verbose: bool = True) -> "Dataset":
    """`load_image_dataset(name)`, plus the name 'emoji-faces': the yellow faces of the shipped emoji set."""
    from course_utils.folders import OFFLINE_NAME
    from course_utils.hub_datasets import load_image_dataset

    if name != EMOJI_FACES:
        return load_image_dataset(name, hub_ok=hub_ok, verbose=verbose)
    faces = emoji_faces(load_image_dataset(OFFLINE_NAME, hub_ok=hub_ok, verbose=False))
    if verbose:
        print(f"dataset {EMOJI_FACES!r}: the yellow face emoji of the shipped set -> {len(faces)} images")
    return faces
