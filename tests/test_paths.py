"""The package finds its own assets wherever it is installed, and the repository's data/ through COURSE_DATA_DIR or
the checkout; when neither has it, the error says where the course looked and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.paths import REPO_DATA, data_root

ROOT = Path(__file__).resolve().parents[1]


def test_data_root_is_the_checkout_or_course_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    assert data_root("emoji/train/metadata.jsonl") == REPO_DATA == ROOT / "data"
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert data_root() == tmp_path
    with pytest.raises(FileNotFoundError, match="COURSE_DATA_DIR") as err:
        data_root("images", what="photos")
    assert str(tmp_path / "images") in str(err.value) and "photos" in str(err.value)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """course_utils installed the way `pip install .` does it (a built wheel, not a link to the checkout)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (target / "course_utils" / "assets" / "clip_tokenizer").is_dir()
    return target


def run_installed(installed: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("COURSE_DATA_DIR", "PYTHONPATH")}
    environ.update(PYTHONPATH=str(installed), PYTHONNOUSERSITE="1", **env)
    libraries = [p for p in sys.path if p.endswith("site-packages")]  # the venv's libraries, not the checkout
    return subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path.extend({libraries!r}); {code}"],
        cwd=installed,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_non_editable_install_finds_its_assets_and_says_where_the_data_is(installed):
    code = (
        "import course_utils; print(course_utils.__file__); "
        "from course_utils.models.standins import clip_tokenizer; print(clip_tokenizer()('a photo of').input_ids); "
        "from course_utils.folders import offline_dataset_dir; offline_dataset_dir()"
    )
    done = run_installed(installed, code)
    assert str(installed) in done.stdout, done.stdout + done.stderr  # the installed copy, not the checkout
    assert "[49406, 320, 1125, 539, 49407]" in done.stdout, done.stderr
    assert "FileNotFoundError" in done.stderr and "pip install -e ." in done.stderr, done.stderr
    assert str(installed / "data" / "emoji") in done.stderr  # where it looked


def test_a_non_editable_install_uses_course_data_dir(installed):
    code = "from course_utils.folders import offline_dataset_dir; print(offline_dataset_dir())"
    done = run_installed(installed, code, COURSE_DATA_DIR=str(ROOT / "data"))
    assert done.returncode == 0 and str(ROOT / "data" / "emoji") in done.stdout, done.stderr
