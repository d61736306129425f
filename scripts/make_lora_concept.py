"""Regenerate data/lora-concepts/: two concepts the course's emoji-sd model has never seen, for
lesson 08.

Each concept is a style applied to shipped emoji and named by a word that occurs in no emoji
caption, so emoji-sd's text encoder holds no meaning for it (like DreamBooth's rare token), and no
training picture looks like it:
- inverted/: every colour's hue turned half-way round the colour wheel (red apple -> cyan apple),
  captioned "<emoji name> in inverted style";
- monochrome/: shades of grey, captioned "<emoji name> in monochrome style".

Both keep the white background: the small VAE of emoji-sd only learned white-background pictures,
and reconstructs a picture on a dark blue sheet at 8.6 dB instead of its usual 24.5 dB.

    python scripts/make_lora_concept.py   # writes <style>/train/ (24 images), <style>/heldout/ (8)

train/ is what the LoRA learns from; heldout/ holds emoji the LoRA never sees in this style: the
targets that lesson 08 measures the distance to, before and after fine-tuning. Both are imagefolder
layouts (`metadata.jsonl` with file_name and text), built from data/emoji (Noto Color Emoji,
Apache-2.0)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_utils.folders import emoji_metadata  # noqa: E402

OUT = ROOT / "data" / "lora-concepts"
TRAIN = [
    "red apple",
    "banana",
    "grapes",
    "strawberry",
    "pear",
    "cherries",
    "lemon",
    "watermelon",
    "dog face",
    "cat face",
    "rocket",
    "house",
    "automobile",
    "bicycle",
    "airplane",
    "sun",
    "star",
    "umbrella",
    "light bulb",
    "guitar",
    "soccer ball",
    "evergreen tree",
    "fish",
    "rabbit face",
]
HELDOUT = [
    "green apple",
    "pineapple",
    "tiger face",
    "bus",
    "crescent moon",
    "mushroom",
    "key",
    "anchor",
]


def inverted(image: Image.Image) -> Image.Image:
    """Turn every hue by 180 degrees; saturation, brightness and the white background stay."""
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + 128) % 256
    return Image.fromarray(hsv, mode="HSV").convert("RGB")


def monochrome(image: Image.Image) -> Image.Image:
    """Shades of grey (luma), as three equal channels."""
    return image.convert("L").convert("RGB")


STYLES = {"inverted": inverted, "monochrome": monochrome}


def write_split(folder: Path, style: str, names: list[str], by_name: dict[str, Path]) -> None:
    """Render each named emoji in `style` into folder/, with metadata.jsonl."""
    folder.mkdir(parents=True)
    rows = []
    for index, name in enumerate(names):
        file_name = f"{index:02d}_{name.replace(' ', '-')}.png"
        STYLES[style](Image.open(by_name[name]).convert("RGB")).save(folder / file_name, optimize=True)
        rows.append({"file_name": file_name, "text": f"{name} in {style} style", "source": name})
    lines = [json.dumps(row) + "\n" for row in rows]
    (folder / "metadata.jsonl").write_text("".join(lines), encoding="utf-8")


def main() -> None:
    """Write <style>/train/ and <style>/heldout/ under --out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    train, rows = emoji_metadata()
    by_name = {row["text"]: train / row["file_name"] for row in rows}
    missing = [name for name in TRAIN + HELDOUT if name not in by_name]
    if missing:
        raise SystemExit(f"Not in data/emoji: {missing}")
    for style in STYLES:
        for split, names in (("train", TRAIN), ("heldout", HELDOUT)):
            if (args.out / style / split).exists():
                shutil.rmtree(args.out / style / split)
            write_split(args.out / style / split, style, names, by_name)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()) / 1e3
    print(f"wrote {len(STYLES)} x ({len(TRAIN)} + {len(HELDOUT)}) images ({size:.0f} kB) to {args.out}")


if __name__ == "__main__":
    main()
