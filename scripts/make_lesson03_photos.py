"""Regenerate data/images/: three public-domain / CC0 photos from scikit-image's sample data, centre-cropped to a
square, resized to 512 px and saved as JPEG, plus data/images/LICENSES.md recording source and licence of each.

scikit-image is needed only here, not by the course:  pip install scikit-image
Run from the repository root:                          python scripts/make_lesson03_photos.py
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from PIL import Image

SIZE = 512
QUALITY = 88
OUT = Path(__file__).resolve().parent.parent / "data" / "images"

# name -> (skimage.data function, what it shows, author/source, licence as scikit-image documents it)
PHOTOS = {
    "astronaut": (
        "astronaut",
        "Eileen Collins, NASA astronaut, in front of the US flag",
        "NASA Great Images database (https://flic.kr/p/r9qvLn)",
        "Public domain (no known copyright restrictions)",
    ),
    "cat": (
        "chelsea",
        "Chelsea the cat",
        "Stefan van der Walt",
        "CC0 1.0 (no copyright restrictions)",
    ),
    "coffee": (
        "coffee",
        "A cup of coffee on a wooden table, courtesy of Pikolo Espresso Bar",
        "Rachel Michetti",
        "CC0 1.0 (no copyright restrictions)",
    ),
}


def square(image: Image.Image, size: int = SIZE) -> Image.Image:
    """Centre-crop to a square and resize to size x size (Lanczos)."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)


def main() -> None:
    """Write the JPEGs and LICENSES.md."""
    from skimage import data

    version = importlib.metadata.version("scikit-image")
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (function, what, author, licence) in PHOTOS.items():
        original = Image.fromarray(getattr(data, function)()).convert("RGB")
        path = OUT / f"{name}.jpg"
        square(original).save(path, quality=QUALITY, optimize=True)
        rows.append(
            f"| `{name}.jpg` | {what} | {author} | {licence} | `skimage.data.{function}()`, "
            f"{original.width}x{original.height} px, centre-cropped and resized to {SIZE}x{SIZE} |"
        )
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")
    (OUT / "LICENSES.md").write_text(
        "# Photos used by lesson 03\n\n"
        f"Taken from the sample data that ships in the scikit-image {version} wheel (`skimage/data/`), whose "
        "documentation gives the licence of each. Regenerate with `python scripts/make_lesson03_photos.py`.\n\n"
        "| file | shows | author / source | licence | made from |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    main()
