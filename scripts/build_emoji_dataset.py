"""Regenerate data/emoji/: the course's offline image dataset, ~1,850 colour emoji rendered at 64 px on white, each
with its Unicode name as a caption, in the layout `datasets.load_dataset("imagefolder", data_dir=...)` reads.

Needs two Debian packages (and Pillow built with libraqm, as the PyPI wheels are, so that flags and ZWJ sequences
such as "family: man, woman, girl" render as one picture):
    apt-get install -y fonts-noto-color-emoji unicode-data
Run:
    python scripts/build_emoji_dataset.py            # writes data/emoji/train/*.png and metadata.jsonl

Images: Noto Color Emoji artwork, Apache-2.0 (flags: public domain); names and groups: Unicode emoji-test.txt
(Unicode licence). data/emoji/README.md records sources, licences and versions.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, features

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "emoji"
FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
FONT_SIZE = 109  # Noto Color Emoji is a CBDT bitmap font: 109 is its one native size (136x128 px glyphs)
SIZE = 64
SKIN_TONES = {0x1F3FB, 0x1F3FC, 0x1F3FD, 0x1F3FE, 0x1F3FF}  # variants of the same picture: left out for variety
LINE = re.compile(r"^(?P<cps>[0-9A-F ]+?)\s*;\s*fully-qualified\s*#\s*\S+\s+E\d+\.\d+\s+(?P<name>.+)$")


@dataclass(frozen=True)
class Emoji:
    """One fully-qualified emoji from emoji-test.txt, with its CLDR group and subgroup."""

    codepoints: tuple[int, ...]
    name: str
    group: str
    subgroup: str

    @property
    def char(self) -> str:
        return "".join(map(chr, self.codepoints))


def read_emoji_test(path: Path = EMOJI_TEST) -> list[Emoji]:
    """Fully-qualified emoji in CLDR order, without skin-tone variants and without the 'Component' group."""
    found, group, subgroup = [], "", ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif (match := LINE.match(line)) and group != "Component":
            cps = tuple(int(cp, 16) for cp in match["cps"].split())
            if not SKIN_TONES & set(cps):
                found.append(Emoji(cps, match["name"].strip(), group, subgroup))
    return found


def file_name(index: int, codepoints: tuple[int, ...]) -> str:
    """'0000_1f600.png': the row number and the code points in hex. Not the emoji's name: datasets'
    imagefolder reads split names out of file names, and names such as 'train' or 'test tube' would
    start splits of their own."""
    return f"{index:04d}_{'-'.join(f'{cp:x}' for cp in codepoints)}.png"


def render(font: ImageFont.FreeTypeFont, text: str) -> Image.Image:
    """Draw `text` at the font's native size, centred on a white square, and downsample to SIZE px RGB."""
    left, top, right, bottom = font.getbbox(text)
    side = max(right - left, bottom - top) + 8  # a 4 px margin at native size, about 2 px at 64 px
    layer = Image.new("RGBA", (side, side), (255, 255, 255, 0))
    xy = ((side - (right - left)) // 2 - left, (side - (bottom - top)) // 2 - top)
    ImageDraw.Draw(layer).text(xy, text, font=font, embedded_color=True)
    white = Image.new("RGBA", layer.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, layer).convert("RGB").resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def check_tools() -> None:
    """Fail early, with the fix, when the font, the Unicode data or Pillow's complex-text layout is missing."""
    missing = [str(p) for p in (FONT, EMOJI_TEST) if not p.is_file()]
    if missing:
        raise SystemExit(f"Missing {missing}. Install them: apt-get install -y fonts-noto-color-emoji unicode-data")
    if not features.check("raqm"):
        raise SystemExit(
            "Pillow was built without libraqm: flags and ZWJ emoji would render as several pictures. "
            "Install Pillow from PyPI wheels (pip install --force-reinstall pillow)."
        )


def build(out: Path = OUT, limit: int | None = None) -> int:
    """Render every emoji into out/train/ with metadata.jsonl; skip glyphs the font lacks; return the count."""
    check_tools()
    font = ImageFont.truetype(str(FONT), FONT_SIZE, layout_engine=ImageFont.Layout.RAQM)
    missing_glyph = render(font, "\U000f0000")  # a private-use code point: the font's 'no glyph' box
    train = out / "train"
    if train.exists():
        shutil.rmtree(train)
    train.mkdir(parents=True)
    rows, skipped = [], []
    for emoji in read_emoji_test()[:limit]:
        image = render(font, emoji.char)
        if image.tobytes() == missing_glyph.tobytes() or image.getextrema() == ((255, 255),) * 3:
            skipped.append(emoji.name)
            continue
        name = file_name(len(rows), emoji.codepoints)
        image.save(train / name, optimize=True)
        rows.append(
            {
                "file_name": name,
                "text": emoji.name,
                "emoji": emoji.char,
                "group": emoji.group,
                "subgroup": emoji.subgroup,
                "codepoints": " ".join(f"U+{cp:04X}" for cp in emoji.codepoints),
            }
        )
    with open(train / "metadata.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    megabytes = sum(p.stat().st_size for p in train.iterdir()) / 1e6
    print(
        f"wrote {len(rows)} images ({megabytes:.1f} MB) to {train}; skipped {len(skipped)} without a glyph: "
        f"{skipped[:10]}"
    )
    return len(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="dataset folder (default: data/emoji)")
    parser.add_argument("--limit", type=int, default=None, help="render only the first N emoji (for a quick look)")
    args = parser.parse_args()
    build(args.out, args.limit)
