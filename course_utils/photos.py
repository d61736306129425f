"""The course's photos (data/images) and any photo file, loaded as RGB the way dataset images are."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from course_utils.checks.values import did_you_mean, require_multiple_of_8
from course_utils.paths import data_root

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


# ---------------------------------------------------------------------------------------------------------- photos
def photos_dir() -> Path:
    """The repository's data/images folder (or $COURSE_DATA_DIR/images), where the lesson's photos live."""
    return data_root() / "images"


def photo_names() -> list[str]:
    """Short names of the photos shipped in data/images ('astronaut', 'cat', 'coffee')."""
    folder = photos_dir()
    return sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES) if folder.is_dir() else []


def photo_path(name_or_path: str | Path, argument: str = "image") -> Path:
    """Resolve a short photo name ('cat') or a file path; a missing file raises FileNotFoundError saying what to do."""
    text = str(name_or_path)
    names = photo_names()
    if text in names:
        return next(p for p in photos_dir().iterdir() if p.stem == text and p.suffix.lower() in PHOTO_SUFFIXES)
    path = Path(text).expanduser()
    for candidate in (path, data_root().parent / path):  # as given, or relative to the repository root
        if candidate.is_file():
            return candidate
    hint = did_you_mean(text, names + [str(photos_dir() / f"{n}.jpg") for n in names])
    raise FileNotFoundError(
        f"{argument}={text!r}: no such file (looked for {path.resolve()}).{hint} Expected the path of an image file "
        f"or the short name of a course photo: {', '.join(repr(n) for n in names) or '(none found)'}. "
        f"Check the spelling, or put your photo in {photos_dir()} and pass its name."
    )


def load_photo(name_or_path: str | Path, size: int | None = None, argument: str = "image") -> Image.Image:
    """Open a course photo (by short name) or any image file as RGB; with `size`, centre-crop and resize it to a
    size x size square."""
    from course_utils.images import load_image

    image = load_image(photo_path(name_or_path, argument))
    if size is not None:
        require_multiple_of_8(size, size)
        image = ImageOps.fit(image, (size, size), Image.LANCZOS)
    return image
