"""Stand-ins built into a shared HF_HOME are readable by its other users, as any file made there
would be."""

from __future__ import annotations

import os
import stat

from course_utils.models.registry import MODELS
from course_utils.models.standins import build_standin


def test_standin_folders_and_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        folder = build_standin(MODELS["ddpm-cat"], tmp_path / "hf-home" / "course-standins" / "ddpm", "tiny")
    finally:
        os.umask(previous)
    paths = [folder, *folder.rglob("*")]
    assert any(p.suffix == ".safetensors" for p in paths)
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path.name, oct(mode))
