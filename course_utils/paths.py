"""Where the course's files are: the package's own assets (installed with it), and the repository's data/ folder
(photos, the emoji dataset, the trained models), which a plain `pip install .` does not copy."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"  # package data: travels with course_utils wherever it is installed
REPO_DATA = Path(__file__).resolve().parents[1] / "data"  # the data/ folder of the course checkout


def data_root(required: str | None = None, what: str = "data", rebuild: str = "") -> Path:
    """$COURSE_DATA_DIR if set, else the course repository's data/ folder. With `required` (a path inside it), raise
    FileNotFoundError saying where the course looked and what to do when that file or folder is missing (`rebuild`:
    the command that makes it again, if there is one)."""
    chosen = os.environ.get("COURSE_DATA_DIR")
    root = Path(chosen).expanduser() if chosen else REPO_DATA
    if required is None or (root / required).exists():
        return root
    where = "COURSE_DATA_DIR" if chosen else "the data/ folder of the course repository, next to course_utils/"
    raise FileNotFoundError(
        f"The course's {what} is missing: looked for {root / required} ({where}). It ships with the course "
        "repository, not with the course_utils package, so a non-editable `pip install .` leaves it behind. Run the "
        "lessons from a clone of the repository (`make setup` installs it with `pip install -e .`), or set "
        "COURSE_DATA_DIR to the clone's data/ folder" + (f", or rebuild it with `{rebuild}`." if rebuild else ".")
    )
