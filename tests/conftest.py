"""Shared fixtures: a private HF_HOME per test session, so tests never read or write a learner's real cache; one
CPU thread for the tiny training models."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def standin_root(tmp_path_factory):
    """A folder where stand-ins are built once per test session."""
    return tmp_path_factory.mktemp("standins")


@pytest.fixture(scope="module")
def one_thread():
    """The training tests' models are tiny: one CPU thread runs them faster than two that mostly wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _shipped(name: str):
    from course_utils.models.emoji import REQUIRED, models_dir

    folder = models_dir() / name
    missing = [f for f in REQUIRED[name] if not (folder / f).exists()]
    assert not missing, (
        f"{folder} lacks {missing}: the course's trained models ship with the repo (make models rebuilds them)"
    )
    return folder


@pytest.fixture(scope="session")
def emoji_ddpm_folder():
    """data/models/emoji-ddpm: the course's trained pixel-space DDPM (ddpm-cat layout)."""
    return _shipped("emoji-ddpm")


@pytest.fixture(scope="session")
def emoji_sd_folder():
    """data/models/emoji-sd: the course's trained text-to-image model (Stable Diffusion layout)."""
    return _shipped("emoji-sd")


@pytest.fixture(scope="session")
def olah_mirror(tmp_path_factory):
    """olah serving the course's models and a flowers-like dataset as a hub mirror, offline; stopped
    at the end."""
    import mirror

    from course_utils.folders import offline_dataset_dir
    from course_utils.models.emoji import models_dir

    images = sorted((offline_dataset_dir() / "train").glob("*.png"))[:12]
    parquet = mirror.flowers_parquet(images)
    served = mirror.course_mirror(tmp_path_factory.mktemp("olah"), models_dir(), parquet)
    yield served
    mirror.stop(served)
